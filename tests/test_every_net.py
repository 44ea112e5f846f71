"""Every variant on every network under every likelihood (all from the registries): an epoch on
tiny colour images of an odd size, then its ladder; each network through bench.run, MLflow and
back; a user's own network via net._target_, its source in the logged model."""

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from bench.evaluation.certified import CertifiedSettings
from bench.evaluation.estimators.ais import AISSettings
from bench.evaluation.estimators.optimal_q import Search
from bench.evaluation.estimators.quadrature import QuadratureSettings
from bench.evaluation.evaluator import EvalSettings, evaluate
from bench.job import build_model, load_data
from bench.run import main
from bench.stored_run import stored_config, stored_model
from bench.tracking.logged_model import download_model
from bench.training.loop import train
from models import LIKELIHOODS, variant, variant_names
from models.nets import NETS
from tests.conftest import config

TINY = CertifiedSettings(  # short chains, coarse grids: every piece runs, none is tuned
    ais=AISSettings(steps=5, chains=2, leapfrog=2),
    ais_examples=4,
    bdmc_examples=4,
    exact_examples=16,  # the SE of a slack near 0 over 4 examples is too rough for a 3-SE test
    quadrature=QuadratureSettings(coarse_points=16, first_points=8, max_points=32),
)
SHORT_SEARCH = Search(cycle_steps=25, max_cycles=2)  # q* keeps its start where it finds no better
SMALLER = {  # a variant's own parts made small (speed only; a variant not here runs as configured)
    "vamp": ["model.components=3"],
    "iaf": ["model.flow_width=8", "model.context_dim=4"],
    "hvae": ["model.z_dim=1", "model.z2_dim=1", "model.h2_dim=8"],  # a latent of 2: quadrature
    "savae": ["model.svi_steps=2"],
}
SHAPE = (10, 9, 3)  # H, W, C: odd, so the image nets pad and crop
SMALL = {
    "mlp": ["model.h_dim=16"],
    "conv": ["net.channels=[4,8]"],
    "resnet": ["net.channels=[4,8]"],
}


def tiny_images(folder: Path, n: int = 96) -> Path:
    """An .npz of n uint8 colour images (smooth, so there is something to learn), 3 classes."""
    rng = np.random.default_rng(0)
    h, w, c = SHAPE
    ramp = np.linspace(0, 1, h * w * c).reshape(SHAPE)
    labels = rng.integers(0, 3, n)
    x = 255 * np.clip(ramp[None] * (1 + labels[:, None, None, None]) / 3, 0, 1)
    x = (x + rng.normal(0, 20, (n, *SHAPE))).clip(0, 255).astype(np.uint8)
    path = folder / "tiny.npz"
    np.savez(path, x=x, y=labels)
    return path


def overrides(path: Path, name: str, net: str, likelihood: str) -> list[str]:
    binarize = "dynamic" if LIKELIHOODS[likelihood].takes == "binary" else "none"
    return [
        f"model={name}",
        f"net={net}",
        "data=files",
        f"data.path={path}",
        f"data.binarize={binarize}",
        f"model.likelihood={likelihood}",
        "model.output_variance=0.1",
        "model.z_dim=2",
        "trainer.batch_size=32",
        *SMALL.get(net, []),
        *SMALLER.get(name, []),
    ]


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("name", variant_names())
def test_every_variant_trains_on_every_net_and_likelihood_and_orders_its_ladder(
    name, net, likelihood, tmp_path
):
    cfg = config(*overrides(tiny_images(tmp_path), name, net, likelihood), "trainer.epochs=1")
    data = load_data(cfg)
    model = build_model(cfg, data, 0)
    (epoch,) = train(model, data, cfg.trainer, progress=False)
    assert math.isfinite(epoch["train/objective"])
    settings = EvalSettings(k=4, gap_examples=16, search=SHORT_SEARCH, certified=TINY)
    metrics = evaluate(model, data, settings).metrics
    assert all(math.isfinite(v) for v in metrics.values())
    if variant(name).stochastic and not LIKELIHOODS[likelihood].normalized:
        assert "loss" in metrics and "nll" not in metrics  # the seed's BCE: no bound
    elif variant(name).stochastic:  # the ladder, within its paired SEs: IW <= -ELBO(q*) <= -ELBO(q)
        assert metrics["bound_gap"] >= -3 * metrics["bound_gap_se"] and "bits_per_dim" in metrics
        assert metrics["amortization_gap"] >= -3 * metrics["amortization_gap_se"]
        # and below them the certified rung: quadrature (a latent of 2), AIS, BDMC on simulated data
        assert model.latent_dim == 2
        assert metrics["iw_slack_exact"] >= -3 * metrics["iw_slack_exact_se"]
        assert {"nll_ais", "bdmc_gap", "nll_certified"} <= set(metrics)


@pytest.mark.parametrize("net", sorted(set(NETS) - {"mlp"}))
def test_an_image_net_runs_logs_and_comes_back_from_the_store(net, tracking_uri):
    """cvae under the discretized logistic on colour images: bits/dim logged, colour grids, the
    logged model and the rebuilt one (config + weights) equal to the trained one."""
    args = overrides(tiny_images(Path.cwd()), "cvae", net, "discretized_logistic")
    assert main([*args, "trainer.epochs=2", "eval.k=5", f"tracking_uri={tracking_uri}"]) == 0
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("vae-bench").experiment_id])
    metrics, run_id = run.data.metrics, run.info.run_id
    d = math.prod(SHAPE)
    assert metrics["test/bits_per_dim"] == pytest.approx(metrics["test/nll"] / (d * math.log(2)))
    assert run.data.params["net.name"] == net and run.data.params["net.channels"] == "[4, 8]"
    grid = Image.open(client.download_artifacts(run_id, "samples.png", str(Path.cwd())))
    assert grid.mode == "RGB"
    mlflow.set_tracking_uri(tracking_uri)
    logged = mlflow.pytorch.load_model(f"runs:/{run_id}/model")
    cfg = stored_config(run_id, tracking_uri)
    data = load_data(cfg)
    rebuilt = stored_model(run_id, cfg, data, tracking_uri)
    x, y = data.test_x[:4], data.test.labels[:4]
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.encode(x, y)[0], logged.encode(x, y)[0])


NETWORK_SOURCE = '''
"""A user's network, kept to the contract of models/nets."""
import math

import torch
from torch import nn


class Tower(nn.Module):
    def __init__(self, in_dim, width, out_dim):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_dim, width), nn.Softplus(), nn.Linear(width, out_dim)
        )

    def forward(self, t, label=None):
        return self.layers(t if label is None else torch.cat([t, label], -1))


class TinyNet(nn.Module):
    def __init__(self, image_shape, z_dim, n_classes, encoder_outputs, outputs_per_pixel, width=8):
        super().__init__()
        d = math.prod(image_shape)
        self.encoder = Tower(d + n_classes, width, encoder_outputs)
        self.decoder = Tower(z_dim + n_classes, width, outputs_per_pixel * d)
'''


def test_a_users_network_trains_and_its_source_travels_with_the_logged_model(
    tracking_uri, tmp_path, monkeypatch
):
    package = tmp_path / "user_code" / "my_nets"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "towers.py").write_text(textwrap.dedent(NETWORK_SOURCE))
    monkeypatch.syspath_prepend(str(package.parent))
    args = overrides(tiny_images(tmp_path), "vae", "custom", "continuous_bernoulli")
    args += ["net._target_=my_nets.towers.TinyNet", "+net.width=12", "trainer.epochs=2"]
    assert main([*args, "eval.k=5", f"tracking_uri={tracking_uri}"]) == 0
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("vae-bench").experiment_id])
    assert run.data.params["net._target_"] == "my_nets.towers.TinyNet"
    assert math.isfinite(run.data.metrics["test/nll"])
    folder = download_model(client, run.info.run_id, tmp_path / "download")
    assert (folder / "code" / "my_nets" / "towers.py").read_text() == textwrap.dedent(
        NETWORK_SOURCE
    )
    load = (
        "import sys, mlflow.pytorch, torch; m = mlflow.pytorch.load_model(sys.argv[1]); "
        "print(type(m.encoder).__module__, m.encoder.layers[0].out_features, "
        "m(torch.rand(2, m.x_dim)).shape)"
    )
    elsewhere = subprocess.run(  # without the user's folder on the path: the model's own copy
        [sys.executable, "-c", load, str(folder)],
        cwd=tmp_path / "download",
        capture_output=True,
        text=True,
        check=True,
    )
    assert elsewhere.stdout.split() == ["my_nets.towers", "12", "torch.Size([2,", "2])"]
