"""python -m bench.report study=NAME [data=...]: reports/<study name>/README.md from MLflow.

Reads the study's runs back with `mlflow.search_runs`, so any tracking URI works (a server too).
"""

import sys

from bench.report.markdown import main

sys.exit(main())
