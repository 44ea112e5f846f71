"""What the tests' fork server loads once for all the study workers it forks, beyond the harness
itself: each worker would otherwise pay for it on its first trial. Measured on this 2-core
machine: torch._dynamo, which Adam's constructor imports, 1.9 s; MLflow's map of installed
packages, which log_model reads to check the model's requirements, 1.5 s; what MLflow imports
as it first opens a SQLite store (alembic, its model-registry tables) and tags a run (its git
and notebook contexts: GitPython, IPython), 1.2 s."""

import alembic.command  # noqa: F401
import git  # noqa: F401
import IPython  # noqa: F401
import mlflow.store.db.utils  # noqa: F401
import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
import torch._dynamo  # noqa: F401
from mlflow.utils import requirements_utils

getattr(requirements_utils, "_init_packages_to_modules_map", lambda: None)()
