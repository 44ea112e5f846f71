"""The certified rung in a run: AIS, BDMC and quadrature logged with their subsets, the rung the
ladder uses, their cost under the IW bound's, and runs copied to a folder re-scored with AIS."""

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bench.evaluation.certified import MIN_ROWS, auto_ais_examples, auto_exact_examples
from bench.evaluation.estimators.ais import AISSettings
from bench.evaluation.estimators.quadrature import QuadratureSettings
from bench.perf.ais import main as perf_main
from bench.run import main as run_main
from bench.score import main as score_main

CERTIFIED = [
    "data=mixture",  # of known density: the excess too
    "data.n_train=1000",
    "data.n_test=300",
    "model.z_dim=2",
    "trainer.epochs=3",
    "eval.k=50",
    "eval.ais.examples=30",
    "eval.ais.steps=200",
    "eval.ais.bdmc_examples=20",
    "eval.exact_examples=30",
]


@pytest.mark.parametrize(
    "n_test,k,labels,expected",
    [(10000, 1000, 1, 55), (10000, 1000, 10, 138), (2000, 1000, 1, 0), (360, 10**6, 1, 360)],
)
def test_auto_ais_and_bdmc_never_cost_more_decoder_passes_than_the_iw_bound(
    n_test, k, labels, expected
):
    """Passes of AIS on n examples and forward and reverse BDMC on n simulated, each pass on at
    least MIN_ROWS rows, against the IW bound's n_test x k (x labels)."""
    settings = AISSettings()
    n = auto_ais_examples(n_test, k, settings, labels)
    passes = settings.passes_per_chain()
    cost = lambda m: passes * max(m * settings.chains, MIN_ROWS) * (labels + 2)  # noqa: E731
    assert n == expected
    assert n == 0 or cost(n) <= n_test * k * labels
    assert n == min(n_test, 1000) or cost(n + 1) > n_test * k * labels  # the most that fit


def test_auto_exact_examples_fit_the_iw_budget_and_only_for_z_dim_up_to_2():
    per_example = QuadratureSettings().passes_per_example(2)
    n = auto_exact_examples(2000, 1000, 2)
    assert n * per_example <= 2000 * 1000 < (n + 1) * per_example
    assert auto_exact_examples(2000, 1000, 3) == 0 and auto_exact_examples(50, 10**6, 1) == 50


@pytest.fixture
def certified_run(tracking_uri, tmp_path) -> tuple[str, dict[str, float], dict[str, str]]:
    cache = f"data.cache={tmp_path / 'cache'}"
    assert run_main([*CERTIFIED, cache, f"tracking_uri={tracking_uri}"]) == 0
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return run.info.run_id, run.data.metrics, run.data.tags


def test_a_run_logs_its_certified_rung_on_its_subsets(certified_run, tracking_uri, tmp_path):
    run_id, m, tags = certified_run
    assert m["test/ais_examples"] == 30 and m["test/exact_examples"] == 30
    assert m["test/bdmc_examples"] == 20 and m["test/bdmc_gap"] > -3 * m["test/bdmc_gap_se"]
    assert tags["test.nll_rung"] == "exact" and tags["test.exact_converged"] == "true"
    # -ln p: quadrature <= AIS <= IW on the same examples, each within its paired SE
    assert m["test/ais_slack_exact"] > -3 * m["test/ais_slack_exact_se"]
    assert m["test/iw_slack_exact"] > -3 * m["test/iw_slack_exact_se"]
    slack = max(m["test/iw_slack_exact"], 0.0)
    assert m["test/nll_certified"] == pytest.approx(m["test/nll"] - slack)
    assert m["test/excess_certified"] == pytest.approx(m["test/excess"] - slack)
    assert m["test/approximation_gap_certified"] >= m["test/approximation_gap"]
    assert {"test/ais_seconds", "test/exact_seconds", "test/ais_acceptance"} <= set(m)
    per_example = pd.read_csv(
        MlflowClient(tracking_uri).download_artifacts(run_id, "test_per_example.csv", tmp_path)
    )
    for column, n in (("nll_ais", 30), ("nll_exact", 30)):
        assert per_example[column][:n].notna().all() and per_example[column][n:].isna().all()
    assert per_example["nll_exact"][:30].mean() == pytest.approx(m["test/nll_exact"])
    chain_se = per_example["nll_ais_chain_se"][:30]  # each example's Monte Carlo error
    assert (chain_se > 0).all() and (chain_se**2).sum() ** 0.5 / 30 == pytest.approx(
        m["test/nll_ais_chain_se"]
    )


def test_auto_turns_ais_off_where_one_example_costs_more_than_the_iw_bound(tracking_uri):
    assert run_main(["trainer.epochs=1", "eval.k=5", f"tracking_uri={tracking_uri}"]) == 0
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.data.params["eval.ais.examples"] == "0" and "test/nll_ais" not in run.data.metrics


def copied_run(tracking_uri: str, tmp_path: Path) -> tuple[str, dict[str, float], Path]:
    """A finished run's config and weights copied to a folder, as bench.reproduce copies them."""
    assert run_main(["trainer.epochs=1", "eval.k=50", f"tracking_uri={tracking_uri}"]) == 0
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    folder = tmp_path / "copied"
    folder.mkdir()
    for name in ("config.yaml", "model.safetensors"):
        shutil.copy(client.download_artifacts(run.info.run_id, name, str(tmp_path)), folder / name)
    return run.info.run_id, run.data.metrics, folder


def test_a_run_copied_to_a_folder_is_rescored_with_ais_into_its_scores(
    tracking_uri, tmp_path, capsys
):
    run_id, m, folder = copied_run(tracking_uri, tmp_path)
    settings = ["eval.k=50", "eval.ais.examples=10", "eval.ais.steps=50", "eval.exact_examples=0"]
    assert score_main([f"folder={folder}", *settings]) == 0
    (scores,) = json.loads((folder / "scores.json").read_text())["test_k50"]
    assert scores["metrics"]["nll"] == pytest.approx(m["test/nll"])  # same split, seed, weights
    assert scores["metrics"]["ais_examples"] == 10 and math.isfinite(scores["metrics"]["nll_ais"])
    assert scores["settings"] == " ".join(settings) and "test_k50/" in capsys.readouterr().out
    longer = [s.replace("steps=50", "steps=60") for s in settings]
    assert score_main([f"folder={folder}", *longer]) == 0  # other settings: kept beside
    assert score_main([f"folder={folder}", *longer]) == 0  # the same again: replaces its own
    entries = json.loads((folder / "scores.json").read_text())["test_k50"]
    assert [e["settings"] for e in entries] == [" ".join(settings), " ".join(longer)]
    (folder / "model.safetensors").unlink()
    for args, message in (
        ([f"folder={folder}"], "has no model.safetensors"),
        ([f"folder={tmp_path / 'nosuch'}"], "has no config.yaml: not a run's folder"),
        ([f"folder={folder}", f"run={run_id}"], "which run?"),
    ):
        assert score_main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_the_ais_benchmark_sets_each_start_and_schedule_beside_the_iw_bound(tracking_uri, tmp_path):
    _, _, folder = copied_run(tracking_uri, tmp_path)
    out = tmp_path / "AIS.md"
    args = ["--examples", "4", "--k", "20", "--steps", "3", "30", "--bdmc", "4", "--chains", "2"]
    assert perf_main([str(folder), *args, "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| copied |")]
    assert [row.split(" | ")[1:3] for row in rows] == [
        ["prior", "3"],
        ["prior", "30"],
        ["encoder", "3"],
        ["encoder", "30"],
    ]
    iw = {row.split(" | ")[3] for row in rows}
    assert len(iw) == 1  # one IW bound, on the same examples, for every row
    assert all("nan" not in row for row in rows)
