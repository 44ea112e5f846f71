"""What the tests' fork server loads once for all the study workers it forks, beyond the harness
itself: each worker would otherwise pay for it on its first trial (measured on this 2-core
machine: torch._dynamo, which Adam's constructor imports, 1.9 s; MLflow's map of installed
packages, which log_model reads to check the model's requirements, 1.5 s)."""

import torch._dynamo  # noqa: F401
from mlflow.utils import requirements_utils

getattr(requirements_utils, "_init_packages_to_modules_map", lambda: None)()
