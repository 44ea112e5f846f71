"""Precision and compilation are settings of how the one training loop and the one evaluator
run: bf16 matmuls stay within the bounds the benchmark measures, compiled kernels equal eager."""

import pytest
import torch

from bench.evaluation.evaluator import EvalSettings, evaluate
from bench.runtime.precision import autocast
from models import LIKELIHOODS, kernels
from models.nets import NETS
from tests.test_training import fit, fit_likelihood

CPU = torch.device("cpu")


@pytest.mark.parametrize("name", ["softplus_sum", "bernoulli_nll", "squared_error", "dot"])
def test_compiled_kernels_equal_eager(name):
    kernel = getattr(kernels, name)
    torch.manual_seed(0)
    logits = torch.randn(30, 7, 784) * 6
    x = (torch.rand(7, 784) < 0.4).float()
    args = (logits,) if name == "softplus_sum" else (logits, x)
    eager = kernel(*args)
    with kernels.compiled_kernels():
        compiled = kernel(*args)
        compiled_bf16 = kernel(*(a.bfloat16() if a is logits else a for a in args))
    assert eager.dtype == compiled.dtype == torch.float64
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-4)
    torch.testing.assert_close(compiled_bf16, kernel(logits.bfloat16(), *args[1:]))


def test_compiled_grey_level_kernels_equal_eager():
    """The discretized logistic's and the continuous Bernoulli's per-pixel sums (float64
    inside), compiled into one pass, against eager: logits near 0 (the series) and far out."""
    torch.manual_seed(0)
    out = torch.cat([torch.rand(30, 7, 784) * 1.4 - 0.2, torch.rand(30, 7, 784) * 8 - 9], -1)
    levels = torch.randint(0, 256, (7, 784)).float() / 255
    logits = torch.randn(30, 7, 784) * torch.logspace(-4, 1.5, 784)
    cases = [
        (kernels.discretized_logistic_nll, (out, levels, 0.5 / 255)),
        (kernels.log_normalizer_sum, (logits,)),
    ]
    for kernel, args in cases:
        eager = kernel(*args)
        with kernels.compiled_kernels():
            compiled = kernel(*args)
        assert eager.dtype == compiled.dtype == torch.float64
        torch.testing.assert_close(compiled, eager, rtol=1e-12, atol=1e-9)


def test_bf16_runs_the_matmuls_in_bf16_and_hands_back_fp32():
    model, data, _ = fit("trainer.epochs=1")
    z = torch.randn(5, model.z_dim)
    with autocast("bf16", CPU):
        assert model.decoder(z).dtype == torch.bfloat16
        assert model.decode(z).dtype == torch.float32
        assert all(t.dtype == torch.float32 for t in model.encode(data.test_x[:5]))
    assert model.decoder(z).dtype == torch.float32


@pytest.mark.parametrize("net", sorted(set(NETS) - {"mlp"}))
def test_bf16_on_an_image_net_trains_and_evaluates_within_the_bound_of_fp32(net):
    """Convolutions under autocast: bf16 training runs, and its evaluation is within 0.05 nats
    of fp32 on the same weights and noise (discretized logistic on the digits' grey levels)."""
    model, data, history = fit_likelihood(
        "discretized_logistic", f"net={net}", "trainer.epochs=3", "trainer.precision=bf16"
    )
    assert history[-1]["train/objective"] < history[0]["train/objective"]
    nll = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        nll[precision] = evaluate(model, data, EvalSettings(k=50, precision=precision)).metrics[
            "nll"
        ]
    assert 0 < abs(nll["bf16"] - nll["fp32"]) <= 0.05


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_bf16_evaluation_is_within_the_refusal_bound_of_fp32(likelihood):
    """Same weights and noise: |Δ nll| <= 0.05 nats (the bound past which eval.precision=bf16
    would be refused), yet not equal (the bf16 path ran); for every likelihood (digits, 6
    epochs: |Δ| was 0.0003-0.0017 nats)."""
    model, data, _ = fit_likelihood(likelihood)
    metrics = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        settings = EvalSettings(k=200, precision=precision)
        metrics[precision] = evaluate(model, data, settings).metrics
    key, other = ("nll", "neg_elbo") if LIKELIHOODS[likelihood].normalized else ("loss", "recon")
    delta = metrics["bf16"][key] - metrics["fp32"][key]
    assert 0 < abs(delta) <= 0.05
    assert metrics["bf16"][other] == pytest.approx(metrics["fp32"][other], abs=0.05)


def test_bf16_training_is_deterministic_and_tracks_fp32():
    fp32 = fit("trainer.epochs=3")[2]
    bf16 = [fit("trainer.epochs=3", "trainer.precision=bf16")[2] for _ in range(2)]
    assert bf16[0] == bf16[1]
    assert bf16[0] != fp32
    assert bf16[0][-1]["train/neg_elbo"] == pytest.approx(fp32[-1]["train/neg_elbo"], abs=0.5)
