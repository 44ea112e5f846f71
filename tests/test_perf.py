"""The benchmark: its reference loop optimizes the harness objective; it writes its table."""

from argparse import Namespace

import torch

from bench.perf.blocks import read_block, write_block
from bench.perf.loop import main, trials_block
from bench.perf.reference import ReferenceVAE, reference_loss
from bench.perf.trials import main as trials_main
from bench.runtime.precision import native_bf16
from models import Bernoulli, variant, variant_names
from tests.conftest import write_mnist_like


def test_reference_loss_is_the_harness_vae_objective():
    torch.manual_seed(0)
    ref = ReferenceVAE()
    ours = variant("vae")(image_shape=(1, 28, 28), z_dim=20, likelihood=Bernoulli())
    with torch.no_grad():
        ours.encoder[0].load_state_dict(ref.fc1.state_dict())
        ours.encoder[2].weight.copy_(torch.cat([ref.fc21.weight, ref.fc22.weight]))
        ours.encoder[2].bias.copy_(torch.cat([ref.fc21.bias, ref.fc22.bias]))
        ours.decoder[0].load_state_dict(ref.fc3.state_dict())
        ours.decoder[2].load_state_dict(ref.fc4.state_dict())
    x = torch.bernoulli(torch.full((64, 784), 0.2))
    torch.manual_seed(1)
    expected = reference_loss(*ref(x)[:1], x, *ref.encode(x))
    torch.manual_seed(1)
    parts = ours.loss_parts(x)
    assert torch.allclose(parts.objective.sum(), expected, rtol=1e-5)


def test_benchmark_writes_its_results_in_its_device_block(tmp_path):
    write_mnist_like(tmp_path / "MNIST" / "raw", n_train=300, n_test=50)
    out = tmp_path / "RESULTS.md"
    write_block(out, "cuda", "## On the GPU: rows from a GPU node", "# title")
    root = ["--data", "mnist", "--root", str(tmp_path), "data.val_size=100"]
    args = [*root, "--epochs", "2", "--seeds", "0", "1", "--k", "5", "--out", str(out)]
    assert main([*args, "--device", "cpu", "--delta-data", "digits"]) == 0
    assert read_block(out, "cuda") == "## On the GPU: rows from a GPU node"  # kept
    text = read_block(out, "cpu")
    assert text.startswith("## On the CPU: ")
    for row in ("reference", "harness fp32", "harness fp32 compiled", "IW bound, k=5, fp32"):
        assert f"| {row} |" in text
    bf16 = ("| harness bf16 |", "| IW bound, k=5, bf16 compiled |")
    assert all(row in text for row in bf16) == native_bf16(torch.device("cpu"))
    assert "loss epoch 2" in text and "Epoch-2 loss minus the reference's" in text
    assert "#### The same on digits" in text and "| `aten::" in text
    assert "avx512_bf16" in text.splitlines()[3]
    assert main([*args, "--device", "cpu", "--delta-data", ""]) == 0  # rewritten, not appended
    assert out.read_text().count("<!-- bench.perf: cpu -->") == 1
    assert "#### The same on digits" not in read_block(out, "cpu")


def test_a_block_is_replaced_in_place_and_a_new_one_appended(tmp_path):
    out = tmp_path / "R.md"
    write_block(out, "cpu", "first", "# T")
    write_block(out, "cuda", "gpu", "# T")
    write_block(out, "cpu", "second $1 \\1", "# T")  # no regex escapes applied to the body
    text = out.read_text()
    assert text.startswith("# T\n") and text.index("second") < text.index("gpu")
    assert read_block(out, "cpu") == "second $1 \\1" and "first" not in text


def test_trials_benchmark_runs_the_study_with_one_and_with_two_workers(tmp_path, capsys):
    out = tmp_path / "TRIALS.md"
    small = ["trainer.epochs=2", "eval.k=5", "model.h_dim=32"]
    assert trials_main(["--trials", "2", "--out", str(out), *small]) == 0
    rows = [
        line
        for line in out.read_text().splitlines()
        if line.startswith("| 1 |") or line.startswith("| 2 |")
    ]
    assert len(rows) == 2 and rows[0].startswith("| 1 | 1 |") and rows[0].endswith("| 1.00× |")
    assert "z_dim=[1,…,2]" in out.read_text()
    assert trials_main(["--workers", "4", "1"]) == 2
    assert "--workers must be >= 2" in capsys.readouterr().err


def test_perf_writes_trials_per_hour_in_a_block_of_its_own(tmp_path, monkeypatch):
    """Where the rows go and what they say; the studies themselves are timed by the test above."""
    measured = []

    def measure(workers, trials, repeats, overrides):
        measured.append((workers, trials, overrides))
        return {w: [(60.0 / w, min(w, trials))] for w in workers}

    monkeypatch.setattr("bench.perf.loop.measure", measure)
    out = tmp_path / "RESULTS.md"
    write_block(out, "cpu", "## On the CPU: loop rows", "# title")
    args = Namespace(trials=16, trials_workers=[4, 8], out=str(out), argv=["--trials-workers"])
    trials_block(args, torch.device("cpu"))
    assert measured == [([1, 4, 8], 16, ["trainer.device=cpu"])]
    text = read_block(out, "cpu-trials")
    assert text.startswith("### Trials per hour on this CPU")
    assert "| 4 | 4 | 15.0 | 3840 | 4.00× |" in text and "| 8 | 8 | 7.5 | 7680 | 8.00× |" in text
    assert read_block(out, "cpu") == "## On the CPU: loop rows"


def test_the_nets_benchmark_measures_every_network_on_grey_and_colour(tmp_path):
    from bench.perf.nets import main as nets_main
    from models.nets import NETS

    out = tmp_path / "NETS.md"
    args = ["--train", "64", "--test", "4", "--k", "2", "--batch", "32", "--out", str(out)]
    assert nets_main([*args, "--modes", "fp32", "fp32 channels_last"]) == 0
    lines = read_block(out, "cpu-nets").splitlines()
    rows = [line for line in lines if line.startswith(("| 28", "| 32"))]
    assert [r.split(" | ")[1] for r in rows] == [*NETS] * 2  # 28×28, then 32×32×3
    mlp, conv = rows[0].split(" | "), rows[1].split(" | ")
    assert mlp[2].endswith("(1.00)") and mlp[3] == "n/a" and conv[3] != "n/a"
    assert all(float(r.split(" | ")[-1].rstrip(" |")) > 0 for r in rows)  # IW ms per image


def test_the_variants_benchmark_measures_every_bounded_variant_against_the_vae(tmp_path):
    from bench.perf.variants import main as variants_main

    out = tmp_path / "VARIANTS.md"
    small = [
        "data=mixture",
        "data.n_train=256",
        "data.n_val=64",
        "data.n_test=32",
        "model.h_dim=16",
    ]
    assert variants_main([*small, "--k", "2", "--device", "cpu", "--out", str(out)]) == 0
    rows = [r for r in read_block(out, "cpu-mixture").splitlines() if r.startswith("| ")][1:]
    names = [r.split(" | ")[0].lstrip("| ") for r in rows]
    bounded = [n for n in variant_names() if variant(n).stochastic]
    assert names[0] == "vae" and sorted(names) == sorted(bounded)
    assert rows[0].split(" | ")[2] == "1.00" and rows[0].split(" | ")[4] == "1.00 |"
    assert all(float(r.split(" | ")[1]) > 0 and float(r.split(" | ")[3]) > 0 for r in rows)
