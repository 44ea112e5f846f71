"""CLI: `python -m bench.run model=vae data=digits trainer.epochs=5` (Hydra overrides)."""

import logging
import os
import sys

from mlflow.entities import RunStatus
from omegaconf import DictConfig

from bench import tracking
from bench.config import load_config
from bench.errors import BenchError
from bench.job import run_job

SHOWN = ("recon", "kl", "neg_elbo", "nll", "nll_conditional", "bound_gap", "bits_per_dim", "active_units")


def run_single(cfg: DictConfig) -> tuple[str, dict[str, float]]:
    """One tracked run; the MLflow run ends FINISHED, FAILED (reason tagged) or KILLED."""
    uri = tracking.tracking_uri(cfg.tracking_uri)
    tracking.check_reachable(uri)
    client = tracking.client_for(uri)
    experiment = tracking.experiment_id(client, cfg.experiment)
    name = f"{cfg.model.name}-z{cfg.model.z_dim}-{cfg.data.name}"
    run_id = client.create_run(experiment, run_name=name, tags=tracking.environment_tags()).info.run_id
    status = RunStatus.FAILED
    try:
        metrics = run_job(cfg, client, run_id, progress=_progress(cfg))
        status = RunStatus.FINISHED
        return run_id, metrics
    except KeyboardInterrupt:
        status = RunStatus.KILLED
        raise
    except Exception as e:
        client.set_tag(run_id, "failure_reason", f"{type(e).__name__}: {e}"[:5000])
        raise
    finally:
        client.set_terminated(run_id, RunStatus.to_string(status))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        cfg = load_config(args)
        run_id, metrics = run_single(cfg)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the MLflow run was marked KILLED", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("VAE_BENCH_DEBUG"):
            raise
        print(f"error: {type(e).__name__}: {e} (VAE_BENCH_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    uri = tracking.tracking_uri(cfg.tracking_uri)
    print(f"run {run_id} in experiment {cfg.experiment!r} at {uri}")
    for key in SHOWN:
        if key in metrics:
            print(f"  test/{key:<16} {metrics[key]:10.3f}")
    return 0


def _progress(cfg: DictConfig) -> bool | None:
    return None if cfg.progress == "auto" else bool(cfg.progress)


if __name__ == "__main__":
    sys.exit(main())
