"""benchmarks/small_data.py: the data sets' splits, the summary's arithmetic, a choice made on
validation accuracy alone, and a tiny run on wine that writes its results and verdicts."""

import datetime

import pandas as pd
import pytest
import torch

from benchmarks import small_data

pytestmark = [pytest.mark.benchmark, pytest.mark.usefixtures("one_thread")]


def test_splits_are_disjoint_stratified_and_standardized_on_training_data():
    d = small_data.make_dataset("wine", None)
    sizes = [len(d[k]) for k in ("y_fit", "y_val", "y_test")]
    assert sizes == [106, 27, 45]  # 178 rows: a quarter to test, a fifth of the rest to val
    rows = torch.cat([d["x_fit"], d["x_val"], d["x_test"]])
    assert len(torch.unique(rows, dim=0)) == 178  # no example in two splits
    train = torch.cat([d["x_fit"], d["x_val"]])
    torch.testing.assert_close(train.mean(0), torch.zeros(13), atol=1e-5, rtol=0)
    torch.testing.assert_close(train.std(0, correction=0), torch.ones(13), atol=1e-4, rtol=0)
    for split in ("y_fit", "y_val", "y_test"):  # stratified: each class's share within 5 %
        share = torch.bincount(d[split], minlength=3) / len(d[split])
        full = torch.bincount(torch.cat([d["y_fit"], d["y_val"], d["y_test"]])) / 178
        assert (share - full).abs().max() < 0.05


def _runs():
    rows = []
    for seed, (va, te, sp) in enumerate([(0.80, 0.70, 0.9), (0.90, 0.80, 0.7)]):
        rows.append(
            dict(
                dataset="a",
                method="sparse-vd",
                recipe="r1",
                seed=seed,
                epochs=30,
                val_acc=va,
                test_acc=te,
                last_test_acc=te,
                sparsity=sp,
            )
        )
        rows.append(
            dict(
                dataset="a",
                method="sparse-vd",
                recipe="r2",
                seed=seed,
                epochs=60,
                val_acc=va - 0.2,
                test_acc=te + 0.15,
                last_test_acc=te,
                sparsity=sp,
            )
        )
        for epochs in (30, 60):
            rows.append(
                dict(
                    dataset="a",
                    method="plain",
                    recipe=f"plain-{epochs}",
                    seed=seed,
                    epochs=epochs,
                    val_acc=0.9,
                    test_acc=0.8 + seed / 10,
                    last_test_acc=0.8,
                    sparsity=0.0,
                )
            )
    return pd.DataFrame(rows)


def test_summary_gaps_are_against_the_plain_net_of_the_same_epochs_and_validation_chooses():
    summary = small_data.summarize(_runs()).set_index("recipe")
    r1, r2 = summary.loc["r1"], summary.loc["r2"]
    assert r1["test_acc"] == pytest.approx(0.75) and r1["test_acc_sd"] == pytest.approx(0.05)
    assert r1["sparsity"] == pytest.approx(0.8) and r1["plain_test_acc"] == pytest.approx(0.85)
    assert r1["test_gap"] == pytest.approx(-10.0) and r1["val_gap"] == pytest.approx(-5.0)
    assert r2["test_gap"] == pytest.approx(5.0) and r2["val_gap"] == pytest.approx(-25.0)
    # r2 is better on test, r1 on validation: the choice never looks at the test split
    assert small_data.choose_recipe(summary.reset_index()) == "r1"
    lines = small_data.verdicts(summary.reset_index(), "r2")
    assert lines == [
        "- a: r2 90.0 % vs plain 85.0 %, gap +5.0 points (within 2: met), sparsity 80.0 %"
    ]


def test_tiny_run_on_wine_writes_runs_summary_and_verdicts(tmp_path):
    argv = ["--datasets", "wine", "--recipes", "old-default", "pretrain-10-lr-3e-3"]
    argv += ["--seeds", "0", "--hidden", "8", "--threads", "1", "--no-progress"]
    argv += ["--out", str(tmp_path)]
    summary = small_data.main(argv)
    assert sorted(summary["recipe"]) == ["old-default", "pretrain-10-lr-3e-3"]
    assert (summary["epochs"] == 30).all() and summary["seeds"].eq(1).all()
    assert summary[["test_acc", "sparsity", "plain_test_acc"]].stack().between(0, 1).all()
    runs = pd.read_csv(tmp_path / "small_data.csv")
    assert sorted(runs["method"].unique()) == ["plain", "sparse-vd"]
    assert len(runs) == 3  # two recipes and one plain net (both recipes train 30 epochs)
    md = (tmp_path / "small_data.md").read_text()
    assert datetime.date.today().isoformat() in md
    assert "python -m benchmarks.small_data --datasets wine" in md
    assert "## Choice (validation only)" in md
    verdict = md.split("## Verdict")[1]
    assert "- wine: " in verdict and ("met" in verdict or "missed" in verdict)
    again = small_data.main(["--runs", str(tmp_path / "small_data.csv"), "--out", str(tmp_path)])
    pd.testing.assert_frame_equal(again, summary)
