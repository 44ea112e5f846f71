"""Compose the Hydra config from `key=value` overrides and reject bad input in one line."""

from importlib.resources import files
from numbers import Real

from hydra import compose, initialize_config_module
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench.data.files import dataset_name
from bench.data.named.sets import NAMED
from bench.data.synthetic.families import FAMILIES
from bench.errors import BenchError, first_line
from bench.evaluation.estimators.ais import STARTS
from bench.networks import CUSTOM, NET_NAMES, check_keys, check_target
from bench.runtime.precision import PRECISIONS
from bench.training.schedules import LR_SCHEDULES
from models import LIKELIHOODS, variant, variant_names
from models.nets import ACTIVATION_NAMES, ACTIVATIONS, NETS

SAMPLERS = ("grid", "tpe", "random")
COMPILE_SETTINGS = ("auto", "none", "default", "reduce-overhead", "max-autotune")
# config group -> what it is
GROUPS = {
    "model": "model",
    "net": "network",
    "data": "dataset",
    "study": "study",
    "recipe": "recipe",
}


def group_options(group: str) -> list[str]:
    """The choices of a config group: its YAML files, less the shared ones named `_*`."""
    names = (p.name for p in (files("bench.conf") / group).iterdir())
    return sorted(n.removesuffix(".yaml") for n in names if n.endswith(".yaml") and n[0] != "_")


OmegaConf.register_new_resolver(
    "path_name", lambda path: "files" if path is None else dataset_name(path), replace=True
)


def load_config(overrides: list[str], config_name: str = "config") -> DictConfig:
    _check_group_choices(overrides)
    try:
        with initialize_config_module("bench.conf", version_base=None):
            cfg = compose(config_name, overrides=overrides)
    except MissingConfigException as e:
        choices = f": choose one of {', '.join(e.options)}" if e.options else ""
        raise BenchError(f"{first_line(e)}{choices}") from None
    except (HydraException, OmegaConfBaseException) as e:
        raise BenchError(_one_line(e)) from None
    validate(cfg)
    return cfg


def _check_group_choices(overrides: list[str]) -> None:
    """`study=nosuch` must not fall back to no study (the study default is optional)."""
    for override in overrides:
        key, sep, value = override.partition("=")
        group = key.lstrip("+")
        if sep and group in GROUPS and value != "null" and value not in group_options(group):
            raise BenchError(
                f"unknown {GROUPS[group]} {value!r}: "
                f"choose one of {', '.join(group_options(group))}"
            )


def validate(cfg: DictConfig) -> None:
    model, trainer = cfg.model, cfg.trainer
    if model.name not in variant_names():
        raise BenchError(
            f"unknown model {model.name!r}: choose one of {', '.join(variant_names())}"
        )
    _at_least("model.z_dim", model.z_dim, 1, int)
    _at_least("model.h_dim", model.h_dim, 1, int)
    _at_least("model.n_hidden", model.n_hidden, 0, int)
    _one_of("model.activation", model.activation, ACTIVATION_NAMES)
    _positive("model.output_variance", model.output_variance)
    _validate_variant_keys(model)
    _one_of("model.likelihood", model.likelihood, tuple(LIKELIHOODS))
    if variant(model.name).conditional and not labelled(cfg.data.name):
        raise BenchError(
            f"model={model.name} conditions on labels and data={cfg.data.name} has none: "
            f"choose one of {', '.join(n for n in group_options('data') if labelled(n))}"
        )
    _check_likelihood_data(model.likelihood, cfg.data)
    _validate_net(cfg.net, model.activation)
    _at_least("trainer.epochs", trainer.epochs, 1, int)
    _at_least("trainer.batch_size", trainer.batch_size, 1, int)
    _positive("trainer.lr", trainer.lr)
    _one_of("trainer.lr_schedule", trainer.lr_schedule, LR_SCHEDULES)
    _at_least("trainer.lr_step_epochs", trainer.lr_step_epochs, 1, int)
    _positive("trainer.lr_gamma", trainer.lr_gamma)
    _positive("trainer.adam_eps", trainer.adam_eps)
    for milestone in trainer.lr_milestones:
        _at_least("trainer.lr_milestones[]", milestone, 1, int)
    _at_least("trainer.warmup_epochs", trainer.warmup_epochs, 0, int)
    _at_least("trainer.patience", trainer.patience, 0, int)
    if trainer.checkpoint_minutes is not None:
        _at_least("trainer.checkpoint_minutes", trainer.checkpoint_minutes, 0)
    _at_least("eval.k", cfg.eval.k, 1, int)
    if cfg.eval.rows_per_chunk != "auto":
        _at_least("eval.rows_per_chunk", cfg.eval.rows_per_chunk, 1, int)
    if cfg.eval.gap_examples != "auto":
        _at_least("eval.gap_examples", cfg.eval.gap_examples, 0, int)
    for key in ("samples", "cycle_steps", "max_cycles", "check_samples"):
        _at_least(f"eval.gap_search.{key}", cfg.eval.gap_search[key], 1, int)
    _positive("eval.gap_search.lr", cfg.eval.gap_search.lr)
    _at_least("eval.gap_search.tol", cfg.eval.gap_search.tol, 0)
    _validate_certified(cfg.eval)
    _one_of("trainer.compile", trainer.compile, COMPILE_SETTINGS)
    _one_of("trainer.precision", trainer.precision, PRECISIONS)
    _one_of("eval.precision", cfg.eval.precision, PRECISIONS)
    _one_of("eval.compile", cfg.eval.compile, ("auto", True, False))
    if cfg.get("study") is not None:
        _validate_study(cfg.study, cfg.net.name)


# A variant's own model.* keys (models/*.py): integers and their least value; numbers > 0 and >= 0
VARIANT_INTEGERS = {
    "k_train": 1,
    "components": 1,
    "flow_length": 0,
    "flow_width": 1,
    "context_dim": 1,
    "z2_dim": 1,
    "h2_dim": 1,
    "n_hidden2": 0,
    "svi_steps": 0,
    "svi_samples": 1,
}
VARIANT_POSITIVE = ("beta", "svi_clip")
VARIANT_NON_NEGATIVE = ("svi_lr", "pseudo_std")


def _validate_variant_keys(model: DictConfig) -> None:
    for key, low in VARIANT_INTEGERS.items():
        if key in model:
            _at_least(f"model.{key}", model[key], low, int)
    for key in VARIANT_POSITIVE:
        if key in model:
            _positive(f"model.{key}", model[key])
    for key in VARIANT_NON_NEGATIVE:
        if key in model:
            _at_least(f"model.{key}", model[key], 0)
    if "activation2" in model:
        _one_of("model.activation2", model.activation2, ACTIVATION_NAMES)


def _validate_certified(eval_cfg: DictConfig) -> None:
    ais = eval_cfg.ais
    for key in ("ais.examples", "ais.bdmc_examples", "exact_examples"):
        value = OmegaConf.select(eval_cfg, key)
        if value != "auto":
            _at_least(f"eval.{key}", value, 0, int)
    for key in ("steps", "chains", "leapfrog"):
        _at_least(f"eval.ais.{key}", ais[key], 1, int)
    _one_of("eval.ais.start", ais.start, STARTS)
    _positive("eval.ais.step_size", ais.step_size)
    if not isinstance(ais.target_acceptance, Real) or not 0 < ais.target_acceptance < 1:
        raise BenchError(
            f"eval.ais.target_acceptance must be in (0, 1), got {ais.target_acceptance!r}"
        )


def _validate_net(net: DictConfig, activation: str) -> None:
    _one_of("net", net.name, NET_NAMES)
    keys = set(net) - {"name", "_target_"}
    if net.name == CUSTOM:
        check_keys(CUSTOM, check_target(net.get("_target_")), keys)
        return
    check_keys(net.name, NETS[net.name], keys)
    if net.name == "mlp":
        return
    _one_of(f"net={net.name}'s activation (model.activation)", activation, tuple(ACTIVATIONS))
    if not OmegaConf.is_list(net.channels) or len(net.channels) == 0:
        raise BenchError(f"net.channels must be a list of widths, e.g. [32, 64]: {net.channels!r}")
    for width in net.channels:
        _at_least("net.channels[]", width, 1, int)
    if "blocks" in net:
        _at_least("net.blocks", net.blocks, 0, int)


def _validate_study(study: DictConfig, net: str) -> None:
    swept = {key for key, _ in _leaves(OmegaConf.to_container(study.space) or {})}
    mlp_only = sorted(swept & {"model.h_dim", "model.n_hidden", "model.activation"})
    if mlp_only and net != "mlp":
        raise BenchError(
            f"study {study.name!r} sweeps {mlp_only[0]}, a size of the MLP: it applies to "
            f"net=mlp only (net={net}'s widths are net.channels)"
        )
    _at_least("study.workers", study.workers, 1, int)
    _one_of("study.sampler", study.sampler, SAMPLERS)
    if study.n_trials is not None:
        _at_least("study.n_trials", study.n_trials, 1, int)
    if not study.seeds:
        raise BenchError("study.seeds needs at least one seed, e.g. study.seeds=[0]")
    for seed in study.seeds:
        _at_least("study.seeds[]", seed, 0, int)


def _leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict) and not {"low", "high"} & set(value):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def labelled(data: str) -> bool:
    """Whether a dataset's images carry class labels (what cvae conditions on)."""
    if data in NAMED:
        return NAMED[data].labelled
    family = FAMILIES.get(data)
    return family is None or family.labelled


def _check_likelihood_data(likelihood: str, data: DictConfig) -> None:
    """Each likelihood is a likelihood of one kind of data (models.likelihood: `takes`)."""
    takes = LIKELIHOODS[likelihood].takes
    if data.name == "linear" and likelihood != "gaussian":
        raise BenchError("data=linear is continuous on R^D: it needs model.likelihood=gaussian")
    if takes == "binary" and data.binarize == "none":
        raise BenchError(
            "model.likelihood=bernoulli needs binary data (BCE on grey levels is not a "
            "likelihood: model.likelihood=bce_grey runs it, without an nll): set "
            "data.binarize=dynamic or static, or choose a likelihood of grey levels (gaussian, "
            "continuous_bernoulli, discretized_logistic)"
        )
    grey_only = takes != "binary" and likelihood != "gaussian"  # a Gaussian fits any floats
    what = "likelihood" if LIKELIHOODS[likelihood].normalized else "loss"
    if grey_only and data.binarize != "none":
        raise BenchError(
            f"model.likelihood={likelihood} is a {what} of grey levels: set "
            "data.binarize=none, or model.likelihood=bernoulli for binarized images"
        )


def _one_of(name: str, value: object, allowed: tuple) -> None:
    if not any(type(value) is type(v) and value == v for v in allowed):
        shown = ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in allowed)
        raise BenchError(f"{name} must be one of {shown}, got {value!r}")


def _at_least(name: str, value: object, low: int, kind: type = Real) -> None:
    if not isinstance(value, kind) or isinstance(value, bool) or value < low:
        raise BenchError(
            f"{name} must be {'an integer' if kind is int else 'a number'} >= {low}, got {value!r}"
        )


def _positive(name: str, value: object) -> None:
    if not isinstance(value, Real) or isinstance(value, bool) or not value > 0:
        raise BenchError(f"{name} must be a number > 0, got {value!r}")


def _one_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines) or type(error).__name__
