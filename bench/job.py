"""One run: data, model, training, test evaluation, all of it logged to one MLflow run."""

import copy
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from bench import signals
from bench.data.dataset import Dataset
from bench.data.load import load
from bench.data.synthetic.load import save as save_density
from bench.errors import BenchError
from bench.evaluation import images
from bench.evaluation.certified import auto_ais_examples, auto_exact_examples, chain_settings
from bench.evaluation.estimators.gaps import auto_examples
from bench.evaluation.estimators.iw import rows_per_chunk
from bench.evaluation.estimators.optimal_q import Search
from bench.evaluation.evaluator import EvalSettings, compile_pays, evaluate
from bench.evaluation.per_example import PER_EXAMPLE, per_example_table
from bench.evaluation.result import Evaluation
from bench.networks import net_factory
from bench.runtime.faults import kill_point
from bench.tracking import mlflow_runs
from bench.tracking.dataset_inputs import dataset_inputs
from bench.tracking.logged_model import log_model
from bench.tracking.redaction import redact
from bench.tracking.weights import log_weights
from bench.training.checkpoint import Checkpointing
from bench.training.loop import EpochCallback, compile_mode, pick_device, steps, train
from models import LIKELIHOODS, build_likelihood, variant
from models.base import LatentModel

EVAL_PREFIX = {"val": "val_eval", "test": "test"}  # keys of the final k-sample evaluation
CHECKPOINT = "checkpoint/training_state.pt"  # the run's artifact that bench.resume goes on from
CONFIG = "config.yaml"  # the resolved config, logged before training
MLP_KEYS = ("h_dim", "n_hidden", "activation")  # model.*: the network's (bench.networks)


def load_data(cfg: DictConfig, device: torch.device | str = "cpu") -> Dataset:
    """The run's data as its likelihood takes them: grey levels dequantized, or as they are."""
    takes = LIKELIHOODS[cfg.model.likelihood].takes
    return load(cfg.data, device, dequantize=takes != "levels")


def build_model(cfg: DictConfig, data: Dataset, seed: int) -> LatentModel:
    """The variant `cfg.model.name` on the network `cfg.net`, its weights initialized from
    `seed`."""
    torch.manual_seed(seed)
    options = OmegaConf.to_container(cfg.model, resolve=True)
    for key in MLP_KEYS:
        options.pop(key)
    name = options.pop("name")
    likelihood = build_likelihood(
        options.pop("likelihood"), options.pop("output_variance"), max(data.n_levels, 2)
    )
    return variant(name)(
        image_shape=data.image_shape,
        n_classes=data.n_classes,
        likelihood=likelihood,
        net=net_factory(cfg),
        **options,
    )


def tag_safe(name: str) -> str:
    """A file's name as an MLflow key may hold it (letters, digits, _ - . space)."""
    return re.sub(r"[^\w\-. ]", "_", name).strip(". ") or "_"


def check_data(cfg: DictConfig, data: Dataset) -> None:
    """What only the data themselves can refuse (the user's files): labels for a conditional
    variant, discrete values for a likelihood that is not a density (Bernoulli, discretized
    logistic), enough images for a batch."""
    if variant(cfg.model.name).conditional and not data.labelled:
        raise BenchError(
            f"model={cfg.model.name} conditions on labels and {data.name} has none: put the "
            "images in class folders, or the labels in the .npz under y"
        )
    if data.is_continuous and LIKELIHOODS[cfg.model.likelihood].takes != "dequantized":
        raise BenchError(
            f"{data.name} holds floats in [0, 1], continuous data: it needs "
            "model.likelihood=gaussian or continuous_bernoulli (store 8-bit images as uint8 to "
            "keep them discrete)"
        )
    if len(data.train) < cfg.trainer.batch_size:
        raise BenchError(
            f"{data.name}: {len(data.train)} training images, fewer than "
            f"trainer.batch_size={cfg.trainer.batch_size}"
        )


def run_job(
    cfg: DictConfig,
    client: MlflowClient,
    run_id: str,
    progress: bool | None = None,
    on_epoch: EpochCallback | None = None,
    validate: bool = False,
    resume: dict[str, Any] | None = None,
    carried: bool = False,
) -> dict[str, float]:
    """Train and evaluate as `cfg` says, logging into `run_id`; with `resume` (a checkpoint of
    this run, or with `carried` of another run of the same config), training goes on from it. A
    carried checkpoint's epochs are logged into `run_id` first, as if it had trained them.

    Returns `test/*` metrics, and with `validate` the same evaluation of the validation split
    as `val_eval/*` (`val/*` are the per-epoch one-sample estimates: one key, one estimator).
    """
    device = pick_device(cfg.trainer.device)
    data = load_data(cfg, device)
    check_data(cfg, data)
    cfg = resolved(cfg, device, data)
    model = build_model(cfg, data, cfg.trainer.seed).to(device)
    if resume is None or carried:
        _log_setup(client, run_id, cfg, data, device)

    def log_epoch(epoch: int, metrics: dict[str, float]) -> None:
        mlflow_runs.log_metrics(client, run_id, metrics, step=epoch)
        if on_epoch is not None:
            on_epoch(epoch, metrics)

    if resume is not None and carried:
        for epoch, metrics in enumerate(resume["history"], start=1):
            log_epoch(epoch, metrics)
    clock = TrainingClock((resume or {}).get("train_seconds", 0.0))
    writer = checkpointing(client, run_id, cfg.trainer, clock)
    history = train(model, data, cfg.trainer, log_epoch, progress, writer, resume)
    kill_point("job:trained")
    seconds = clock.seconds()
    results = {
        "train_seconds": seconds,
        "train_samples_per_s": len(history) * len(data.train) / seconds,
        "epochs_run": len(history),
        "best_epoch": history.best_epoch,
    }
    settings = EvalSettings.from_config(cfg.eval)
    for split in ("val", "test") if validate else ("test",):
        torch.manual_seed(cfg.trainer.seed)
        evaluation = evaluate(model, data, settings, split)
        results |= {f"{EVAL_PREFIX[split]}/{k}": v for k, v in evaluation.metrics.items()}
    kill_point("job:evaluated")
    mlflow_runs.log_metrics(client, run_id, results, step=len(history))
    _log_evaluation(client, run_id, evaluation)
    with signals.deferred():
        log_model(client, run_id, model, data, step=len(history))  # linked to the test metrics
    log_weights(client, run_id, model)
    _log_artifacts(client, run_id, model, data, evaluation)
    return results


class TrainingClock:
    """Seconds of training, counting those before a resume."""

    def __init__(self, before: float = 0.0):
        self.before, self.started = before, time.perf_counter()

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.started


def checkpointing(
    client: MlflowClient, run_id: str, cfg: DictConfig, clock: TrainingClock
) -> Checkpointing | None:
    """Writes the training state (and its training seconds) as the run's CHECKPOINT artifact
    every `cfg.checkpoint_minutes` (None: never)."""
    if cfg.checkpoint_minutes is None:
        return None

    def write(state: dict[str, Any]) -> None:
        state["train_seconds"] = clock.seconds()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(CHECKPOINT).name
            torch.save(state, path)
            client.log_artifact(run_id, str(path), str(Path(CHECKPOINT).parent))

    return Checkpointing(write, float(cfg.checkpoint_minutes))


def resolved(cfg: DictConfig, device: torch.device, data: Dataset) -> DictConfig:
    """A copy with the `auto` settings made explicit (and logged): those that depend on the
    device, and the gap decomposition's subset size, from the test split's."""
    cfg = copy.deepcopy(cfg)
    train_steps = steps(cfg.trainer, len(data.train))
    cfg.trainer.compile = compile_mode(cfg.trainer.compile, device, train_steps)
    cfg.eval.rows_per_chunk = rows_per_chunk(cfg.eval.rows_per_chunk, device)
    if cfg.eval.compile == "auto":
        cfg.eval.compile = compile_pays(int(cfg.eval.k) * len(data.test) * data.x_dim)
    if cfg.eval.gap_examples == "auto":
        search = Search(**cfg.eval.gap_search)
        cfg.eval.gap_examples = auto_examples(len(data.test), int(cfg.eval.k), search)
    _resolve_certified(cfg, data)
    return cfg


def _resolve_certified(cfg: DictConfig, data: Dataset) -> None:
    n_test, k = len(data.test), int(cfg.eval.k)
    labels = data.n_classes if variant(cfg.model.name).conditional else 1
    ais = cfg.eval.ais
    if ais.examples == "auto":
        ais.examples = auto_ais_examples(n_test, k, chain_settings(ais), labels)
    if ais.bdmc_examples == "auto":
        ais.bdmc_examples = ais.examples
    if cfg.eval.exact_examples == "auto":
        options = OmegaConf.to_container(cfg.model, resolve=True)
        latent = variant(options.pop("name")).latent_size(**options)
        cfg.eval.exact_examples = auto_exact_examples(n_test, k, latent)


def _log_evaluation(client: MlflowClient, run_id: str, evaluation: Evaluation) -> None:
    """The IW bound at each prefix k as `test/nll_at_k` (step = k), and the evaluation's tags."""
    for k, nll in evaluation.nll_at_k.items():
        mlflow_runs.log_metrics(client, run_id, {"test/nll_at_k": nll}, step=k)
    mlflow_runs.set_tags(client, run_id, {f"test.{k}": v for k, v in evaluation.tags.items()})


def _log_setup(
    client: MlflowClient, run_id: str, cfg: DictConfig, data: Dataset, device: torch.device
) -> None:
    provenance = data.provenance()
    params = mlflow_runs.flatten(OmegaConf.to_container(cfg, resolve=True))
    params |= {f"dataset.{k}": str(v) for k, v in provenance.items() if k != "sha256"}
    mlflow_runs.log_params(client, run_id, params)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    tags: dict[str, Any] = {"device": device_name, "dataset.sha256": provenance["sha256"]}
    tags |= {f"dataset.sha256.{tag_safe(name)}": sha for name, sha in data.sha256.items()}
    mlflow_runs.set_tags(client, run_id, tags)
    mlflow_runs.log_inputs(client, run_id, dataset_inputs(data))
    with signals.deferred():
        client.log_text(run_id, redact(OmegaConf.to_yaml(cfg, resolve=True)), CONFIG)


def _log_artifacts(
    client: MlflowClient,
    run_id: str,
    model: LatentModel,
    data: Dataset,
    evaluation: Evaluation,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        per_example_table(evaluation, data).to_csv(out / PER_EXAMPLE, index_label="example")
        if data.density is not None:
            save_density(data.density, out / f"data_{data.density.name}.npz")
        model.eval()
        images.sample_grid(model, data, out / "samples.png")
        images.reconstruction_grid(model, data, out / "reconstructions.png")
        if model.conditional:
            images.class_grid(model, data, out / "class_samples.png")
        client.log_artifacts(run_id, tmp)
