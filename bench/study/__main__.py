import sys

from bench.study.loop import main

sys.exit(main())
