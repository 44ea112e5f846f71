"""python -m bench.run [key=value ...]

Train, evaluate and track one run, or with `study=NAME` (zdim, hdim, variance, variants, smoke)
an Optuna study of such runs. Overrides are Hydra's: choose a config group with
`model=vae|ae|l2reg|cvae|iwae|beta-vae` and `data=digits|mnist|fashion-mnist|kmnist|cifar10|
svhn|celeba|omniglot|omniglot-burda|mixture|linear|files`, set any key with
`trainer.epochs=5`, `model.z_dim=10`, `eval.k=5000`, `study.n_trials=20`, `tracking_uri=...`,
`storage=postgresql://...`. The defaults:
"""

import sys

from omegaconf import DictConfig, OmegaConf

from bench.cli import run_command
from bench.config import load_config
from bench.data.sources import fetch_files
from bench.job import CHECKPOINT, check_data, load_data, run_job
from bench.study.loop import StudyResult, run_study
from bench.study.summary import best_trials_table
from bench.tracking import mlflow_runs
from bench.tracking.redaction import redact, without_password

SHOWN = (
    "data_entropy",
    "recon",
    "kl",
    "neg_elbo",
    "nll",
    "nll_conditional",
    "bound_gap",
    "excess",
    "amortization_gap",
    "approximation_gap",
    "bits_per_dim",
    "active_units",
)


def run_single(cfg: DictConfig) -> tuple[str, str, dict[str, float]]:
    """One tracked run: (experiment id, run id, test metrics); the MLflow run ends FINISHED,
    FAILED (reason tagged) or KILLED."""
    client = mlflow_runs.connect(cfg.tracking_uri)
    experiment = mlflow_runs.experiment_id(client, cfg.experiment)
    name = f"{cfg.model.name}-z{cfg.model.z_dim}-{cfg.data.name}"
    with mlflow_runs.tracked_run(client, experiment, name) as run_id:
        try:
            return experiment, run_id, run_job(cfg, client, run_id, progress=progress_flag(cfg))
        except KeyboardInterrupt:
            if client.list_artifacts(run_id, CHECKPOINT.rpartition("/")[0]):
                print(
                    f"go on from its checkpoint: python -m bench.resume run={run_id}",
                    file=sys.stderr,
                )
            raise


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if {"-h", "--help"} & set(args):
        print(__doc__ + OmegaConf.to_yaml(load_config([])))
        return 0
    return run_command(lambda: _run(load_config(args), args))


def _run(cfg: DictConfig, args: list[str]) -> None:
    if cfg.data.get("format") == "files":  # the user's files are checked before any run starts
        check_data(cfg, load_data(cfg))
    fetch_files(cfg.data)  # a named set's files are there, or no run starts
    if cfg.get("study") is not None:
        from bench.report.markdown import write_report  # matplotlib: only a study's last step

        result = run_study(cfg, args, progress_flag(cfg))
        if result.ended_here:
            report = str(write_report(cfg))
        else:  # one report, by the worker whose trial ended the study, not one per worker
            here = without_password(f"python -m bench.report {' '.join(args)}")
            report = f"by the worker that finished the last trial; here: {here}"
        _print_study(cfg, result, report)
    else:
        _print_run(cfg, *run_single(cfg))


def _print_run(cfg: DictConfig, experiment: str, run_id: str, metrics: dict[str, float]) -> None:
    uri = mlflow_runs.tracking_uri(cfg.tracking_uri)
    print(f"run {run_id} in experiment {cfg.experiment!r} at {redact(uri)}")
    for key in SHOWN:
        if f"test/{key}" in metrics:
            se = metrics.get(f"test/{key}_se")
            error = f" ± {se:.3f}" if se is not None else ""
            print(f"  test/{key:<18} {metrics[f'test/{key}']:10.3f}{error}")
    print("\n".join(mlflow_runs.ui_links(uri, experiment, run_id)))


def _print_study(cfg: DictConfig, result: StudyResult, report: str) -> None:
    print(best_trials_table(result.study))
    uri = mlflow_runs.tracking_uri(cfg.tracking_uri)
    print(f"optuna: study {result.study.study_name!r} in {redact(result.storage)}")
    dashboard = without_password(result.storage)
    hint = "  # the password from PGPASSWORD or ~/.pgpass" if dashboard != result.storage else ""
    print(f"optuna-dashboard {dashboard}{hint}")
    print(f"mlflow: parent run {result.parent_run_id} (one child run per trial) at {redact(uri)}")
    print("\n".join(mlflow_runs.ui_links(uri, result.experiment_id)))
    print(f"report: {report}")


def progress_flag(cfg: DictConfig) -> bool | None:
    return None if cfg.progress == "auto" else bool(cfg.progress)


if __name__ == "__main__":
    sys.exit(main())
