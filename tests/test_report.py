import re
import struct

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bench.report import figures
from bench.report.ladder import _rung_text
from bench.report.markdown import main as report_main
from bench.report.markdown import trial_params
from bench.report.runs import StudyRuns
from bench.run import main as run_main

FAILING = ["study=smoke", "+study.space.trainer.lr=[0.001,1000000.0]"]


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    stores = [
        f"tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
        f"storage=sqlite:///{tmp / 'optuna.db'}",
        f"report_dir={tmp / 'reports'}",
    ]
    assert run_main(FAILING + stores) == 0  # the study writes its report at the end
    return tmp, stores, tmp / "reports" / "smoke-digits"


def png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def table_rows(text):
    section = text.split("## Runs")[1].split("##")[0]
    return [line for line in section.splitlines() if line.startswith("| ") and "trials" not in line]


def test_report_has_a_row_per_complete_trial_with_mlflow_numbers(smoke_report):
    tmp, _, out = smoke_report
    text = (out / "README.md").read_text()
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    finished = [r for r in runs if r.info.status == "FINISHED" and "trial" in r.data.tags]
    rows = table_rows(text)
    assert len(finished) == 3 and len(rows) == 3
    for run in finished:
        (row,) = [r for r in rows if r.split("|")[2].strip() == run.data.tags["trial"]]
        m = run.data.metrics
        for key in ("test/recon", "test/kl", "test/neg_elbo", "test/nll", "test/bound_gap"):
            assert f" {m[key]:.2f} " in row, (key, row)
        assert f" {m['test/active_units']:.0f} " in row
    best = min(finished, key=lambda r: r.data.metrics["test/nll"])
    assert rows[0].startswith("| **best** | " + best.data.tags["trial"] + " |")
    assert "nll (k=20)" in text and "The best bound is vae" in text
    parent = finished[0].data.tags["mlflow.parentRunId"]
    experiment = finished[0].info.experiment_id
    assert f"`mlflow ui --backend-store-uri sqlite:///{tmp / 'mlflow.db'}`" in text
    assert f"/#/experiments/{experiment}/runs/{parent}?workflowType=machine_learning>" in text


def test_failed_trial_is_listed_with_its_reason(smoke_report):
    text = (smoke_report[2] / "README.md").read_text()
    failures = text.split("## Failed and pruned trials")[1].split("##")[0]
    assert len(re.findall(r"\| FAILED \| .*diverged in epoch 1", failures)) == 3
    assert "trainer.lr=1000000.0" in failures


def test_a_stopped_trial_of_a_swept_config_group_is_named_by_its_choice_and_seed():
    parent = pd.Series({"params.study.space.model": "['vae', 'vamp']"})
    runs = pd.DataFrame({"params.model.name": ["vamp", "vae"], "params.trainer.seed": ["0", "1"]})
    study = StudyRuns("rungs", parent, runs)
    assert trial_params(runs.iloc[0], study) == "model=vamp trainer.seed=0"
    one_seed = StudyRuns("rungs", parent, runs.assign(**{"params.trainer.seed": "0"}))
    assert trial_params(runs.iloc[1], one_seed) == "model=vae"


def test_the_iw_slack_of_a_row_of_seeds_has_no_se_to_show():
    row = pd.Series({"nll_rung": "ais", "ais_examples": 55, "iw_slack": 0.19})
    seeds = _rung_text(pd.concat([row, pd.Series({"iw_slack_se": float("nan")})]))
    assert "the IW bound is 0.19 nats above it" in seeds
    single = _rung_text(pd.concat([row, pd.Series({"iw_slack_se": 0.03})]))
    assert "the IW bound is 0.19 ± 0.03 nats above it" in single


def test_figures_are_pngs_of_the_expected_size(smoke_report):
    out = smoke_report[2]
    text = (out / "README.md").read_text()
    for name in ("bound", "gap", "rate_distortion", "active_units", "learning_curves", "nll_at_k"):
        assert f"![{name}.png]({name}.png)" in text
        assert png_size(out / f"{name}.png") == figures.PIXELS
    for name in ("best_samples.png", "best_reconstructions.png"):
        assert f"({name})" in text and min(png_size(out / name)) >= 256  # 8x8 digits enlarged


def test_regenerating_is_idempotent(smoke_report):
    tmp, stores, out = smoke_report
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert report_main(["study=smoke", *FAILING[1:], *stores]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_missing_study_and_unreachable_server_are_one_line(tmp_path, capsys):
    assert report_main(["study=smoke", f"tracking_uri=sqlite:///{tmp_path / 'none.db'}"]) == 2
    assert report_main(["study=smoke", "tracking_uri=http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: no study named 'smoke-digits'")
    assert err[1].startswith("error: tracking server http://127.0.0.1:9 is unreachable")
    assert report_main([f"tracking_uri=sqlite:///{tmp_path / 'none.db'}"]) == 2


def test_a_variance_sweep_reports_each_runs_own_optimal_variance(tmp_path):
    sweep = [
        "study=smoke",
        "model.likelihood=gaussian",
        "data=linear",
        f"data.cache={tmp_path / 'cache'}",
        "data.n_train=600",
        "data.n_test=200",
        "~study.space.model.z_dim",
        "+study.space.model.output_variance=[0.05,0.5]",
        f"tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"storage=sqlite:///{tmp_path / 'optuna.db'}",
    ]
    assert run_main(sweep) == 0
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    trials = [r for r in runs if "trial" in r.data.tags]
    assert len(trials) == 2 and all(r.data.metrics["test/optimal_variance"] > 0 for r in trials)
    out = tmp_path / "reports" / "smoke-linear"
    text = (out / "README.md").read_text()
    assert "| σ²* |" in text and "the σ² that would maximize its own reconstruction" in text
    s2 = float(trials[0].data.params["dataset.density.noise_variance"])
    assert f"The data's own noise variance (a linear-Gaussian model) is s²={s2:.4g}" in text
    assert png_size(out / "optimal_variance.png") == figures.PIXELS
    ladder = text.split("## The bound ladder")[1].split("## Runs")[0]
    assert "| H(data) |" in ladder and "sits" in ladder and "above the data's entropy" in ladder
    assert png_size(out / "nll_at_k.png") == figures.PIXELS


def test_paired_comparison_recovers_a_known_shift(tmp_path, tracking_uri):
    """Three runs' per-example artifacts: the best, one equal up to noise, one 0.3 nats worse."""
    import mlflow
    import numpy as np
    import pandas as pd

    from bench.evaluation.per_example import PER_EXAMPLE
    from bench.report.paired import paired_vs_best

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("paired")
    rng = np.random.default_rng(0)
    difficulty = 80 + 20 * rng.random(500)  # shared by every run: what pairing cancels
    run_ids = []
    for shift in (0.0, 0.0, 0.3):
        run_id = client.create_run(experiment).info.run_id
        nll = difficulty + shift + 0.05 * rng.standard_normal(500)
        folder = tmp_path / run_id
        folder.mkdir()
        pd.DataFrame({"nll": nll}).to_csv(folder / PER_EXAMPLE, index_label="example")
        client.log_artifact(run_id, str(folder / PER_EXAMPLE))
        run_ids.append(run_id)
    rows = pd.DataFrame({"run_ids": [[r] for r in run_ids], "nll": [90.0, 90.0, 90.3]})
    out = paired_vs_best(rows, pd.DataFrame({"test_set": ["same"] * 3}), best=0)
    assert abs(out.loc[2, "delta"] - 0.3) < 3 * out.loc[2, "delta_se"] < 0.03
    assert out["indistinguishable"].tolist() == [True, True, False]
    other = paired_vs_best(rows, pd.DataFrame({"test_set": ["a", "a", "b"]}), best=0)
    assert other["delta"].isna().all()  # different test sets: no paired comparison


def test_precision_column_flags_bf16_runs_and_reads_old_runs_as_fp32():
    from bench.report.table import precision

    runs = pd.DataFrame(
        {
            "params.trainer.precision": ["fp32", "bf16", None, "bf16"],
            "params.eval.precision": ["fp32", "bf16", "bf16", "fp32"],
        }
    )
    assert list(precision(runs)) == ["fp32", "bf16 train+eval", "bf16 eval", "bf16 train"]
    assert list(precision(pd.DataFrame(index=range(2)))) == ["fp32", "fp32"]


def test_a_beta_sweep_explains_the_trade_and_labels_the_rate_distortion_plane(tmp_path):
    sweep = [
        "study=smoke",
        "model=beta-vae",
        "~study.space.model.z_dim",
        "+study.space.model.beta=[0.5,2.0]",
        f"tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"storage=sqlite:///{tmp_path / 'optuna.db'}",
    ]
    assert run_main(sweep) == 0
    out = tmp_path / "reports" / "smoke-digits"
    text = (out / "README.md").read_text()
    assert "Each β trades rate (KL) for distortion (recon)" in text and "β = 2σ²" in text
    assert png_size(out / "rate_distortion.png") == figures.PIXELS


def test_runs_at_one_place_of_the_rate_distortion_plane_share_one_label():
    runs = pd.DataFrame({"model.beta": [10.0, 0.5, 4.0], "kl": [0.01, 9.0, 0.02]})
    runs["recon"] = [27.5, 16.4, 27.51]
    labels = sorted(label for _, label in figures._shared_labels(runs, "model.beta"))
    assert labels == ["0.5", "4, 10"]


def test_the_seeds_loss_is_set_beside_likelihoods_of_the_same_grey_levels(tmp_path):
    sweep = [
        "study=likelihoods",
        "trainer.epochs=2",
        "eval.k=10",
        "model.h_dim=32",
        "study.space.model.likelihood=[bce_grey,continuous_bernoulli,discretized_logistic]",
        "+study.space.net=[mlp,conv]",
        f"tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"storage=sqlite:///{tmp_path / 'optuna.db'}",
    ]
    assert run_main(sweep) == 0
    text = (tmp_path / "reports" / "likelihoods-digits" / "README.md").read_text()
    note = next(line for line in text.splitlines() if line.startswith("BCE on grey levels"))
    assert "not a normalized likelihood" in note and "Here the seed's loss is" in note
    assert re.search(r"continuous_bernoulli \(mlp\) nll -?\d+\.\d\d nats, \d\.\d{3} bits/dim", note)
    assert re.search(r"discretized_logistic \(mlp\) nll \d+\.\d\d nats, \d\.\d{3} bits/dim", note)
    assert re.search(r"discretized_logistic \(conv \[32, 64\]\) nll \d+\.\d\d nats", note)
    assert "ranked by bits/dim" in text  # a density's nats and a probability's differ by D ln L
    assert "| loss (no bound) |" in text
    rows = table_rows(text)
    bce = [r for r in rows if "| bce_grey |" in r]
    assert len(bce) == 2 and all("| n/a | n/a | n/a | n/a |" in r for r in bce)  # no bound
    assert sum("| conv [32, 64] |" in r for r in rows) == 3


def test_bits_per_dim_anchors_are_shown_as_context_with_their_estimator():
    from bench.report.markdown import anchor_lines

    rows = pd.DataFrame({"bits_per_dim": [4.2, 3.9]})
    lines = anchor_lines(rows, "cifar10")
    assert (
        lines[1]
        == "Context (other model classes, not like-for-like): Our best here: 3.900 bits/dim."
    )
    shown = "\n".join(lines)
    assert "**3.11 bits/dim**" in shown and "k=10000" in shown and "**2.87 bits/dim**" in shown
    assert "the test ELBO (an upper bound on the nll)" in shown
    assert anchor_lines(rows, "mnist") == []


def test_a_whole_split_q_star_elbo_outside_its_rungs_is_not_shown():
    """−ELBO − amortization gap below the nll (a gap the encoder's IW samples do not close)."""
    from types import SimpleNamespace

    from bench.report.ladder import ladder_table

    rows = pd.DataFrame(
        {
            "variant": ["vae", "vae"],
            "data_entropy": [float("nan")] * 2,
            "nll": [100.0, 100.0],
            "neg_elbo": [110.0, 110.0],
            "excess": [float("nan")] * 2,
            "approximation_gap": [2.0, 2.0],
            "amortization_gap": [5.0, 30.0],  # 110 - 30 = 80 < nll
        }
    )
    paired = pd.DataFrame({"delta": [0.0, 0.0], "delta_se": [0.0, 0.0], "indistinguishable": True})
    study = SimpleNamespace(swept=lambda: [])
    ordered, unordered = ladder_table(rows, study, paired)[2:]
    assert "| 105.00 |" in ordered and "n/a‡" not in ordered
    assert "| n/a‡ |" in unordered and "80.00" not in unordered


def test_a_certified_rung_re_splits_the_ladder_and_shows_the_iw_slack(tmp_path):
    """AIS 2 nats below the IW bound: the excess loses them, the approximation gap gains them,
    the table names the rung and the figure has the slack as a segment of its own."""
    from types import SimpleNamespace

    from bench.report.figures import ladder as ladder_figure
    from bench.report.ladder import ladder_table, ladder_text

    rows = pd.DataFrame(
        {
            "variant": ["vae", "iwae"],
            "data_entropy": [90.0, 90.0],
            "nll": [100.0, 101.0],
            "neg_elbo": [110.0, 108.0],
            "excess": [10.0, 11.0],
            "approximation_gap": [3.0, 2.0],
            "amortization_gap": [7.0, 5.0],
            "nll_certified": [98.0, 101.0],
            "nll_rung": ["ais", "iw"],
            "iw_slack": [2.0, -0.5],
            "iw_slack_se": [0.1, 0.2],
            "excess_certified": [8.0, 11.0],
            "approximation_gap_certified": [4.5, float("nan")],
            "gap_iw_slack": [1.5, float("nan")],
            "ais_examples": [40, 40],
        }
    )
    paired = pd.DataFrame({"delta": [0.0, 1.0], "delta_se": [0.0, 0.1], "indistinguishable": False})
    study = SimpleNamespace(swept=lambda: ["model"])
    certified, uncertified = ladder_table(rows, study, paired)[2:]
    assert "| 98.00 (ais) | 100.00 |" in certified and "| 2.00 ± 0.10 | 8.00 | 4.50 | 7.00 |" in (
        certified
    )
    assert "| 101.00 (iw) |" in uncertified and "| 11.00 | 2.00 | 5.00 |" in uncertified
    text = ladder_text(rows, study, 0, paired)
    assert "sits 19.50 nats above" in text and "certified by AIS on the first 40 test" in text
    assert "the IW bound is 2.00 ± 0.1 nats above it there" in text
    looser = ladder_text(rows, study, 1, paired)
    assert "AIS is 0.50 ± 0.2 nats looser than the IW bound" in looser
    path = ladder_figure(rows, ["vae", "iwae"], tmp_path / "ladder.png")
    assert png_size(path) == figures.PIXELS


def test_the_rung_a_variant_moved_is_found_from_known_per_example_shifts():
    """A variant 0.2 nats lower on the approximation gap of every subset example, the same up to
    noise elsewhere: that rung moved, by -0.2 within its SE; the excess did not."""
    import numpy as np

    from bench.report.rungs import Move, moved, sentence

    rng = np.random.default_rng(0)
    n, subset = 400, 100
    base = pd.DataFrame(
        {
            "excess": 80 + 20 * rng.random(n),
            "approximation_gap": np.r_[rng.random(subset), np.full(n - subset, np.nan)],
            "amortization_gap": np.r_[rng.random(subset), np.full(n - subset, np.nan)],
        }
    )
    ours = base + rng.normal(0, 0.05, (n, 3))
    ours["approximation_gap"] -= 0.2
    deltas = moved(ours, base)
    mean, se = deltas["approximation_gap"]
    assert abs(mean + 0.2) < 3 * se < 0.05
    assert abs(deltas["excess"][0]) < 3 * deltas["excess"][1]
    row = pd.Series({"samples_per_s": 500.0, "iw_seconds": 3.0, "data_entropy": 24.0})
    vae = pd.Series({"samples_per_s": 1000.0, "iw_seconds": 1.0})
    text = sentence(Move("iaf", deltas, row, vae))
    assert "it moved the approximation gap most, by -0.2" in text
    assert "training 2.0× the vae's seconds per epoch" in text and "3.0× its seconds" in text
    assert text.count("the excess ") == 1  # H(data) known: the excess is named as such
    unknown = sentence(Move("iaf", deltas, row.drop("data_entropy"), vae))
    assert "the excess (its nll: H(data) unknown)" in unknown


def test_a_rungs_study_reports_what_each_variant_moved_against_the_vae(tmp_path):
    stores = [
        f"tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"storage=sqlite:///{tmp_path / 'optuna.db'}",
        f"report_dir={tmp_path / 'reports'}",
    ]
    small = ["data.n_train=500", "data.n_val=100", "data.n_test=200", "model.h_dim=32"]
    args = ["study=rungs", "study.space.model=[vae,iaf]", "study.seeds=[0]", "trainer.epochs=1"]
    evaluation = ["eval.k=20", "eval.gap_examples=40"]
    assert run_main([*args, *small, *evaluation, *stores]) == 0
    text = (tmp_path / "reports" / "rungs-mixture" / "README.md").read_text()
    section = text.split("### Which rung each variant moved")[1].split("## Runs")[0]
    (line,) = [s for s in section.splitlines() if s.startswith("- ")]
    assert line.startswith("- **iaf** − vae, paired on the same test examples: the excess ")
    assert "the approximation gap" in line and "the amortization gap" in line
    assert "× the vae's seconds per epoch" in line
    assert (tmp_path / "reports" / "rungs-mixture" / "rungs.png").exists()


def test_the_nll_at_k_figure_of_replicated_seeds_is_the_same_file_each_time(tmp_path):
    """Its band over seeds is a bootstrap: seeded, so a regenerated report is the same bytes."""
    import numpy as np

    noise = np.random.default_rng(0).normal(0, 0.05, (3, 10))
    rows = [
        {"k": k, "nll": 25 - 0.1 * i + noise[i, seed], "label": "vae"}
        for i, k in enumerate((1, 10, 100))
        for seed in range(10)
    ]
    curves = pd.DataFrame(rows)
    first = figures.nll_at_k(curves, 24.0, tmp_path / "a.png").read_bytes()
    assert figures.nll_at_k(curves, 24.0, tmp_path / "b.png").read_bytes() == first
