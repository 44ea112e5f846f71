import sys

from bench.perf.loop import main

sys.exit(main())
