"""python -m bench.reproduce: recipe runs against published numbers, weights kept beside."""

import mlflow.pytorch

from bench.config import group_options
from bench.reproduce import main, published
from bench.run import main as run_main
from bench.tracking import mlflow_runs
from tests.conftest import config


def test_published_numbers_are_found_for_a_recipes_data_and_variant():
    assert published("vampprior2018", "fashion-mnist", "vae", 1)["nll"] == 228.70
    assert published("burda2016", "mnist", "iwae", 5)["nll"] == 85.54
    assert published("burda2016", "mnist", "vae", 1)["nll"] == 86.76
    assert published("vampprior2018", "digits", "vae", 1) is None
    assert published("vampprior2018", "fashion-mnist", "vamp", 1)["nll"] == 227.35
    assert published("burda2016", "mnist", "hvae", 1)["nll"] == 85.33  # two stochastic layers


def test_burdas_two_layer_model_is_the_hvae_in_his_recipe():
    """784-200-200-z1 100-100-100-z2 50, tanh (yburda/iwae experiments.py, layers=2)."""
    from bench.job import build_model, load_data

    cfg = config("recipe=burda2016", "model=hvae", "model.z_dim=100", "model.z2_dim=50")
    cfg.data = config("data=digits").data  # the sizes, not the data, are what is checked
    model = build_model(cfg, load_data(cfg), 0)
    assert model.latent_dim == 150 and type(model).stochastic_layers == 2
    widths = [m.out_features for m in model.q_z2 if hasattr(m, "out_features")]
    assert widths == [100, 100, 100]  # two hidden layers of 100, then (mu, logvar) of z2
    encoder = [m.out_features for m in model.encoder if hasattr(m, "out_features")]
    assert encoder == [200, 200, 200]  # two hidden layers of 200, then (mu, logvar) of z1 (100)


def test_the_table_lists_recipe_runs_and_keeps_their_weights_and_rows(
    tracking_uri, tmp_path, capsys
):
    small = ["data=digits", "trainer.epochs=2", "eval.k=5", f"tracking_uri={tracking_uri}"]
    assert run_main(["recipe=vampprior2018", *small]) == 0
    assert run_main(small) == 0  # not a recipe run: not listed
    out = tmp_path / "bm" / "REPRODUCE.md"
    assert main(["--tracking-uri", tracking_uri, "--out", str(out)]) == 0
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| digits |")]
    assert rows == [rows[0]] and "| 2 of 2 |" in rows[0] and "none recorded" in rows[0]
    on_mnist = [r for r in group_options("recipe") if config(f"recipe={r}").data.name == "mnist"]
    assert text.count("Not run here (it needs mnist's training split)") == len(on_mnist) > 0
    folder = tmp_path / "bm" / "reproduce" / "vampprior2018-digits-vae-seed0"
    assert (folder / "config.yaml").exists() and not (folder / "model.pt").exists()
    model = mlflow.pytorch.load_model(str(folder / "model"))
    assert type(model).__name__ == "VAE" and model.z_dim == 40

    elsewhere = f"sqlite:///{tmp_path / 'another-machine.db'}"  # a store without the run
    assert main(["--tracking-uri", elsewhere, "--out", str(out)]) == 0
    assert [line for line in out.read_text().splitlines() if line.startswith("| digits |")] == rows
    (folder / "run.json").write_text('{"recipe": "vampprior2018", "nll": 1.0}')
    assert main(["--tracking-uri", elsewhere, "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "run.json is not a run record: it lacks data" in error


def test_a_recipe_run_stopped_midway_is_listed_with_how_far_it_got(tracking_uri, tmp_path):
    client = mlflow_runs.connect(tracking_uri)
    run_id = client.create_run(mlflow_runs.experiment_id(client, "vae-bench")).info.run_id
    params = {"recipe_name": "burda2016", "data.name": "mnist", "model.name": "iwae"}
    mlflow_runs.log_params(client, run_id, params | {"trainer.seed": "1", "trainer.epochs": "3280"})
    for epoch, value in ((1, 99.0), (2, 97.5), (3, 98.0), (2, 97.5)):  # epoch 2 again: resumed
        mlflow_runs.log_metrics(client, run_id, {"val/neg_elbo": value}, step=epoch)
    client.set_terminated(run_id, "KILLED")
    out = tmp_path / "REPRODUCE.md"
    assert main(["--tracking-uri", tracking_uri, "--out", str(out)]) == 0
    section = out.read_text().split("## `burda2016`")[1].split("## ")[0]
    assert "Not run here" not in section
    assert (
        f"- mnist iwae seed 1, run `{run_id}` (KILLED): epoch 3 of at most 3280, best "
        "validation −ELBO 97.50 at epoch 2"
    ) in section


def test_a_copied_run_scored_with_ais_gets_its_certified_line(tmp_path):
    import json

    from bench.reproduce import certified_lines

    folder = tmp_path / "vampprior2018-fashion-mnist-vae-seed0"
    folder.mkdir()
    metrics = {"nll": 228.24, "nll_ais": 214.9, "iw_slack": 0.31, "iw_slack_se": 0.05}
    metrics |= {"ais_examples": 100, "bdmc_examples": 50, "bdmc_gap": 0.4}
    scores = {"test_k5000": [{"settings": "eval.k=5000 eval.ais.examples=100", "metrics": metrics}]}
    (folder / "scores.json").write_text(json.dumps(scores))
    lines = certified_lines([(folder, {}, {"nll": 228.70, "k": 5000})])
    (line,) = [x for x in lines if x.startswith("- ")]
    assert "(`test_k5000`: eval.k=5000 eval.ais.examples=100)" in line
    assert "first 100 test examples is 0.31 ± 0.05 nats below the IW bound at k = 5000" in line
    assert "certified −ln p 227.93, -0.77 against the published number" in line
    assert "That is an IW bound (k = 5000) too" in line
    assert certified_lines([(tmp_path, {}, None)]) == []  # no scores.json: no line
    own = {"k": 1000, "settings": "eval.ais.examples=100", "metrics": metrics}
    (line,) = [x for x in certified_lines([(tmp_path, {"certified": own}, None)]) if x[:2] == "- "]
    assert "(its own evaluation: eval.ais.examples=100)" in line and "IW bound at k = 1000" in line
