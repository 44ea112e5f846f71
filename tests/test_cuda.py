"""What differs on a GPU: `pytest -m cuda` runs these where CUDA is available; elsewhere they are
collected and skipped. Every registered variant trains and evaluates on the device without a
host round trip per step; the compiled step (CUDA graphs) and bf16 give eager fp32's numbers
within seed noise; a checkpoint written on the GPU resumes to the uninterrupted history; local
workers share one GPU; an IW chunk too large for the GPU is one error line."""

import copy
import subprocess
import sys

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from bench.data.load import load
from bench.evaluation.evaluator import EvalSettings, evaluate
from bench.job import build_model
from bench.training.checkpoint import Checkpointing
from bench.training.loop import train
from models import variant, variant_names
from tests.conftest import config

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
SMALL = ["trainer.device=cuda", "model.h_dim=128", "trainer.batch_size=16"]


def fit(*overrides: str):
    cfg = config(*SMALL, *overrides)
    data = load(cfg.data, "cuda")
    model = build_model(cfg, data, cfg.trainer.seed).cuda()
    return model, data, train(model, data, cfg.trainer), cfg


def device_to_host_copies(run) -> int:
    """How many device-to-host copies `run()` makes (the profiler's Memcpy DtoH events)."""
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    return sum(e.count for e in prof.key_averages() if e.key.startswith("Memcpy DtoH"))


@pytest.mark.parametrize("name", variant_names())
def test_every_variant_trains_and_evaluates_on_the_gpu_without_a_sync_per_step(name):
    cfg = config(*SMALL, f"model={name}", "trainer.epochs=2")
    data = load(cfg.data, "cuda")
    assert data.test_x.is_cuda and data.val_x.is_cuda
    model = build_model(cfg, data, cfg.trainer.seed).cuda()
    history = []
    copies = device_to_host_copies(lambda: history.extend(train(model, data, cfg.trainer)))
    steps = cfg.trainer.epochs * -(-len(data.train) // cfg.trainer.batch_size)
    assert copies < steps / 2, f"{copies} device-to-host copies in {steps} steps"  # not 1 a step
    assert history[-1]["train/objective"] < history[0]["train/objective"]
    metrics = evaluate(model, data, EvalSettings(k=50)).metrics
    if variant(name).stochastic:
        assert metrics["nll"] <= metrics["neg_elbo"] and metrics["bound_gap"] >= 0


def test_cuda_graphs_give_eager_numbers_within_seed_noise():
    _, _, eager, _ = fit("trainer.epochs=3")
    _, _, graphs, _ = fit("trainer.epochs=3", "trainer.compile=reduce-overhead")
    for a, b in zip(eager, graphs, strict=True):
        assert b["train/neg_elbo"] == pytest.approx(a["train/neg_elbo"], rel=0.01)
        assert b["val/neg_elbo"] == pytest.approx(a["val/neg_elbo"], rel=0.02)


def test_bf16_trains_and_evaluates_as_fp32_does():
    model, data, fp32, _ = fit("trainer.epochs=3")
    _, _, bf16, _ = fit("trainer.epochs=3", "trainer.precision=bf16")
    assert bf16[-1]["val/neg_elbo"] == pytest.approx(fp32[-1]["val/neg_elbo"], rel=0.02)
    nll = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        settings = EvalSettings(k=100, precision=precision, gap_examples=0)
        nll[precision] = evaluate(model, data, settings).metrics["nll"]
    assert abs(nll["bf16"] - nll["fp32"]) < 0.05


def test_a_checkpoint_written_on_the_gpu_resumes_to_the_same_history():
    cfg = config(*SMALL, "trainer.epochs=5", "trainer.checkpoint_minutes=0")
    data = load(cfg.data, "cuda")
    states = []
    whole = build_model(cfg, data, 0).cuda()
    keep = Checkpointing(lambda state: states.append(copy.deepcopy(state)), minutes=0)
    history = train(whole, data, cfg.trainer, checkpoint=keep)
    resumed = build_model(cfg, data, 0).cuda()
    assert train(resumed, data, cfg.trainer, resume=states[1]) == history
    for name, value in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name


def test_four_local_workers_share_one_gpu_and_finish(tmp_path):
    args = [
        sys.executable,
        "-m",
        "bench.run",
        "study=smoke",
        "study.space.model.z_dim=[2,3,4,5,6,7,8,9]",
        "study.workers=4",
        "trainer.device=cuda",
        f"storage=sqlite:///{tmp_path / 'optuna.db'}",
        f"tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count(": COMPLETE") == 8


def test_an_iw_chunk_too_large_for_the_gpu_is_one_error_line(tmp_path):
    """Sized from this GPU's memory: the chunk's first hidden layer alone needs twice of it (an
    H200 held k=100,000 on the digits)."""
    cfg = config()
    memory = torch.cuda.get_device_properties(0).total_memory
    rows = 2 * memory // (4 * cfg.model.h_dim)
    k = -(-rows // cfg.data.test_size)
    args = [
        sys.executable,
        "-m",
        "bench.run",
        "trainer.device=cuda",
        "trainer.epochs=1",
        f"eval.k={k}",
        f"eval.rows_per_chunk={k * cfg.data.test_size}",
        f"tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    (line,) = done.stderr.strip().splitlines()[-1:]
    assert line.startswith("error:") and "memory" in line and done.stderr.count("error:") == 1


def test_ais_on_the_gpu_agrees_with_the_cpu_and_does_not_sync_a_step():
    from bench.evaluation.estimators.ais import AISSettings, ais

    model, data, _, _ = fit("trainer.epochs=2", "model.z_dim=4")
    x = data.test_x[:64]
    settings = AISSettings(steps=200, chains=8)
    torch.manual_seed(0)
    found = []
    copies = device_to_host_copies(lambda: found.append(ais(model, x, None, settings)))
    assert copies < settings.steps / 2, f"{copies} device-to-host copies in {settings.steps} steps"
    cpu = ais(copy.deepcopy(model).cpu(), x.cpu(), None, settings)
    gap = (found[0].log_px.cpu() - cpu.log_px).mean()
    se = (found[0].chain_se.cpu().pow(2) + cpu.chain_se.pow(2)).mean().sqrt() / 8
    assert abs(float(gap)) < 4 * float(se) + 0.05
