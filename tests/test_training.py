import math

import pytest
import torch

from bench.evaluation.evaluator import EvalSettings, evaluate
from bench.job import build_model, load_data
from bench.training.loop import DivergedError, train
from models import LIKELIHOODS, variant, variant_names
from tests.conftest import config

LIKELIHOOD_METRICS = {"kl", "neg_elbo", "nll", "bound_gap", "bits_per_dim"}


def fit(*overrides: str):
    cfg = config("trainer.epochs=6", "model.h_dim=128", *overrides)
    data = load_data(cfg)
    model = build_model(cfg, data, cfg.trainer.seed)
    history = train(model, data, cfg.trainer)
    return model, data, history


def fit_likelihood(name: str, *overrides: str):
    """fit() under likelihood `name`, on the data it takes: the digits' binary draws for the
    Bernoulli, their grey levels otherwise (σ² = 0.05 for the Gaussian)."""
    grey = [] if LIKELIHOODS[name].takes == "binary" else ["data.binarize=none"]
    return fit(f"model.likelihood={name}", "model.output_variance=0.05", *grey, *overrides)


STOCHASTIC = [name for name in variant_names() if variant(name).stochastic]


@pytest.mark.parametrize("name", variant_names())
def test_every_variant_trains_and_its_objective_falls(name):
    model, data, history = fit(f"model={name}")
    first, last = history[0], history[-1]
    assert last["train/objective"] < 0.8 * first["train/objective"]
    assert last["val/objective"] < first["val/objective"]
    metrics = evaluate(model, data, EvalSettings(k=50)).metrics
    if not variant(name).stochastic:
        assert LIKELIHOOD_METRICS.isdisjoint(metrics) and "recon" in metrics
    else:
        assert LIKELIHOOD_METRICS <= set(metrics)
        assert metrics["bound_gap"] >= 0
        assert metrics["nll"] <= metrics["neg_elbo"]
    assert ("nll_conditional" in metrics) == variant(name).conditional


@pytest.mark.parametrize("name", LIKELIHOODS)
def test_every_likelihood_trains_and_its_bounds_are_ordered(name):
    """On the digits' grey levels (their binary draws for the Bernoulli): the objective falls,
    the IW bound is below -ELBO, and bits/dim is nll/(D ln 2) for a discrete likelihood, plus
    the dequantization's D ln L for a density."""
    model, data, history = fit_likelihood(name)
    assert history[-1]["train/objective"] < history[0]["train/objective"]
    metrics = evaluate(model, data, EvalSettings(k=50)).metrics
    if not LIKELIHOODS[name].normalized:  # a loss, not a likelihood: nothing it would bound
        assert (LIKELIHOOD_METRICS - {"kl"}).isdisjoint(metrics) and "neg_elbo" not in history[-1]
        assert metrics["loss"] == pytest.approx(metrics["recon"] + metrics["kl"])
        return
    assert metrics["nll"] <= metrics["neg_elbo"] and metrics["bound_gap"] >= 0
    d = data.x_dim
    shift = d * math.log(data.n_levels) if LIKELIHOODS[name].takes == "dequantized" else 0.0
    assert metrics["bits_per_dim"] == pytest.approx((metrics["nll"] + shift) / (d * math.log(2)))
    assert metrics["bits_per_dim_se"] == pytest.approx(metrics["nll_se"] / (d * math.log(2)))
    if LIKELIHOODS[name].takes == "levels":  # x = k/(L-1) exactly, no dequantization noise
        assert torch.equal(data.test_x * (data.n_levels - 1), data.test.levels.float())


def test_l2reg_trains_on_its_penalty_not_the_kl():
    _, _, l2 = fit("model=l2reg", "model.l2_mu=2.0")
    _, _, vae = fit("model=vae")
    assert l2[-1]["train/objective"] != pytest.approx(l2[-1]["train/neg_elbo"], rel=1e-3)
    assert vae[-1]["train/objective"] == pytest.approx(vae[-1]["train/neg_elbo"], rel=1e-6)


@pytest.mark.parametrize("name", STOCHASTIC)
def test_same_seed_same_metrics(name):
    runs = []
    for _ in range(2):
        model, data, history = fit(f"model={name}", "trainer.epochs=3", "trainer.seed=7")
        metrics = evaluate(model, data, EvalSettings(k=20, gap_examples=30)).metrics
        assert {"amortization_gap", "gap_seconds", "nll_se"} <= set(metrics)
        runs.append((history, {k: v for k, v in metrics.items() if not k.endswith("_seconds")}))
    assert runs[0] == runs[1]
    _, _, other = fit(f"model={name}", "trainer.epochs=3", "trainer.seed=8")
    assert other != runs[0][0]


def test_divergence_stops_with_a_clear_failure():
    with pytest.raises(DivergedError, match="diverged in epoch 1: non-finite loss"):
        fit("trainer.lr=1e6")


def test_compiled_training_step_optimizes_the_same_objective():
    """torch.compile is opt-in on the CPU (auto leaves it off). The compiled step draws its own
    noise stream: the same seed gives the same numbers, and the same objective as eager."""
    assert config().trainer.compile == "auto"
    _, _, eager = fit("trainer.epochs=3")
    runs = [fit("trainer.epochs=3", "trainer.compile=default")[2] for _ in range(2)]
    assert runs[0] == runs[1]
    for a, b in zip(eager, runs[0], strict=True):
        assert b["train/neg_elbo"] == pytest.approx(a["train/neg_elbo"], rel=0.01)
        assert b["val/neg_elbo"] == pytest.approx(a["val/neg_elbo"], rel=0.02)


def test_auto_settings_are_resolved_for_the_device_and_logged(tracking_uri):
    from mlflow.tracking import MlflowClient

    from bench.run import main as run_main

    assert run_main(["trainer.epochs=1", "eval.k=5", f"tracking_uri={tracking_uri}"]) == 0
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.data.params["trainer.compile"] == "none"
    assert run.data.params["eval.rows_per_chunk"] == "2048"
    assert run.data.params["eval.compile"] == "False"  # digits: 360 x 64 x 5 elements
    assert run.data.params["trainer.precision"] == run.data.params["eval.precision"] == "fp32"


def test_auto_compiles_only_long_runs():
    from bench.training.loop import AUTO_COMPILE_MIN_STEPS, compile_mode

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert compile_mode("auto", cpu, AUTO_COMPILE_MIN_STEPS["cpu"] - 1) == "none"
    assert compile_mode("auto", cpu, AUTO_COMPILE_MIN_STEPS["cpu"]) == "default"
    assert compile_mode("auto", cuda, AUTO_COMPILE_MIN_STEPS["cuda"] - 1) == "none"
    assert compile_mode("auto", cuda, AUTO_COMPILE_MIN_STEPS["cuda"]) == "reduce-overhead"
    assert compile_mode("default", cpu, 1) == "default"
    assert compile_mode("none", cuda, 10**9) == "none"
