"""python -m bench.run [key=value ...]

Train, evaluate and track one run. Overrides are Hydra's: choose a config group with
`model=vae|ae|l2reg|cvae` and `data=digits|mnist|fashion-mnist|kmnist`, set any key with
`trainer.epochs=5`, `model.z_dim=10`, `eval.k=5000`, `tracking_uri=...`. The defaults:
"""

import logging
import os
import signal
import sys

from mlflow.entities import RunStatus
from omegaconf import DictConfig, OmegaConf

from bench import tracking
from bench.config import load_config
from bench.errors import BenchError
from bench.job import run_job

SHOWN = (
    "recon",
    "kl",
    "neg_elbo",
    "nll",
    "nll_conditional",
    "bound_gap",
    "bits_per_dim",
    "active_units",
)


def run_single(cfg: DictConfig) -> tuple[str, dict[str, float]]:
    """One tracked run; the MLflow run ends FINISHED, FAILED (reason tagged) or KILLED."""
    uri = tracking.tracking_uri(cfg.tracking_uri)
    tracking.check_reachable(uri)
    client = tracking.client_for(uri)
    experiment = tracking.experiment_id(client, cfg.experiment)
    name = f"{cfg.model.name}-z{cfg.model.z_dim}-{cfg.data.name}"
    run_id = client.create_run(
        experiment, run_name=name, tags=tracking.environment_tags()
    ).info.run_id
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
    if {"-h", "--help"} & set(args):
        print(__doc__ + OmegaConf.to_yaml(load_config([])))
        return 0
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _interrupt)
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
        print(
            f"error: {type(e).__name__}: {e} (VAE_BENCH_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
    uri = tracking.tracking_uri(cfg.tracking_uri)
    print(f"run {run_id} in experiment {cfg.experiment!r} at {uri}")
    for key in SHOWN:
        if key in metrics:
            print(f"  test/{key:<16} {metrics[key]:10.3f}")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _progress(cfg: DictConfig) -> bool | None:
    return None if cfg.progress == "auto" else bool(cfg.progress)


if __name__ == "__main__":
    sys.exit(main())
