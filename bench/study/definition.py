"""What a study is: where it is stored, how many trials it wants, the config it was made with."""

import os
from functools import cache

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.storages import RDBStorage

from bench.errors import BenchError, first_line
from bench.study.space import Space, build_pruner, build_sampler, grid_size
from bench.tracking import mlflow_runs
from bench.tracking.redaction import redact

# Keys that say where or how the study runs, not what a trial measures: left out of the
# fingerprint, so changing them resumes the same study. The pruner decides which trials run to
# the end, never what a finished trial's numbers are.
HOW_IT_RUNS = (
    "tracking_uri",
    "storage",
    "experiment",
    "progress",
    "report_dir",
    "study.n_trials",
    "study.heartbeat_seconds",
    "study.grace_seconds",
    "study.workers",
    "study.pruner",
    "data.root",
    "data.download",
    "data.system_dirs",
    "trainer.device",
    "trainer.compile",
    "eval.rows_per_chunk",
)


def storage_url(configured: str | None) -> str:
    return str(configured) if configured else f"sqlite:///{os.path.abspath('optuna.db')}"


def target(spec: DictConfig, space: Space) -> int:
    """How many finished trials the study wants."""
    if spec.sampler == "grid":
        size = grid_size(space)
        return size if spec.n_trials is None else min(int(spec.n_trials), size)
    if spec.n_trials is None or int(spec.n_trials) < 1:
        raise BenchError(f"study.n_trials must be >= 1 for study.sampler={spec.sampler}")
    return int(spec.n_trials)


def open_study(cfg: DictConfig, space: Space, storage: RDBStorage, url: str) -> optuna.Study:
    """Create the study or load it; refuse another config's study under the same name."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            study_name=cfg.study.name,
            storage=storage,
            sampler=build_sampler(cfg.study, space),
            pruner=build_pruner(cfg.study),
            direction="minimize",
            load_if_exists=True,
        )
    except BenchError:
        raise
    except Exception as e:
        reason = first_line(e)
        raise BenchError(f"cannot open Optuna storage {redact(url)}: {reason}") from None
    fingerprint = study_fingerprint(cfg)
    stored = study.user_attrs.get("config")
    if stored is None:
        study.set_user_attr("config", fingerprint)
    elif _differing_keys(stored, fingerprint):
        raise BenchError(
            f"study {cfg.study.name!r} in {redact(url)} was made with another config "
            f"({_differences(stored, fingerprint)}): set study.name=NEW to start another"
        )
    return study


def study_fingerprint(cfg: DictConfig) -> dict[str, str]:
    """The resolved config without what says only where or how things run or are stored."""
    flat = mlflow_runs.flatten(OmegaConf.to_container(cfg, resolve=True))
    return {k: redact(v) for k, v in flat.items() if not k.startswith(HOW_IT_RUNS)}


def _differing_keys(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Keys that differ. Not compared: a key that has become how-it-runs (stored by an older
    version), and a key added since the study was made that is at its default (the older
    version's trials measured everything they measured the same way)."""
    added_at_default = {k for k, v in new.items() if k not in old and _defaults().get(k) == v}
    keys = sorted((set(old) | set(new)) - added_at_default)
    return [k for k in keys if old.get(k) != new.get(k) and not k.startswith(HOW_IT_RUNS)]


@cache
def _defaults() -> dict[str, str]:
    from bench.config import load_config

    return mlflow_runs.flatten(OmegaConf.to_container(load_config([]), resolve=True))


def _differences(old: dict[str, str], new: dict[str, str], shown: int = 3) -> str:
    keys = _differing_keys(old, new)
    parts = [f"{k}: {old.get(k)} -> {new.get(k)}" for k in keys[:shown]]
    return "; ".join(parts) + ("; ..." if len(keys) > shown else "")
