"""Smoke test of benchmarks/uncertainty.py on digits (tiny settings, not timed)."""

import datetime
import math

import pandas as pd
import pytest

from benchmarks import uncertainty

pytestmark = [pytest.mark.benchmark, pytest.mark.usefixtures("one_thread")]


def test_tiny_run_writes_the_three_tables(tmp_path):
    argv = "--data digits --models lenet300-normal:mc-dropout dense --train-subset 600".split()
    argv += "--num-epochs 4 --num-samples 4 --test-subset 150 --eps 0.05 0.3 --pgd-steps 3".split()
    argv += ["--threads", "1", "--no-progress", "--out", str(tmp_path)]
    tables = uncertainty.main(argv)
    calib, ood, adv = tables["calibration"], tables["ood"], tables["adversarial"]
    assert calib["model"].tolist() == ["MC dropout", "deterministic"]
    assert calib["draws"].tolist() == [4, 1]
    assert calib[["acc", "ece"]].stack().between(0, 1).all()
    assert (calib["brier"].between(0, 2)).all() and (calib["nll"] > 0).all()
    # a deterministic net has no epistemic score
    dense = calib.iloc[1]
    assert math.isnan(dense["mean_mutual_info"]) and dense["mean_entropy"] > 0
    assert len(ood) == 2 * 4 * len(uncertainty.SCORES)
    assert set(ood["ood"]) == {"digits (resized)", "rotated 90°", "inverted", "uniform noise"}
    bayes = ood[ood["model"] == "MC dropout"]
    assert bayes[["auroc", "aupr"]].stack().between(0, 1).all()
    assert (
        ood[(ood["model"] == "deterministic") & (ood["score"] == "mutual_info")]["auroc"]
        .isna()
        .all()
    )
    assert len(adv) == 2 * 2 * 2  # models x attacks x eps
    # the attacks hurt the net they target: at eps 0.3 below its clean accuracy
    for model, group in adv[adv["eps"] == 0.3].groupby("model"):
        clean = calib.set_index("model").loc[model, "mean_net_acc"]
        assert (group["mean_net_acc"] < clean).all(), model
    for name in ("calibration", "ood", "adversarial"):
        pd.testing.assert_frame_equal(
            pd.read_csv(tmp_path / f"uncertainty_{name}.csv"), tables[name], check_dtype=False
        )
    md = (tmp_path / "uncertainty.md").read_text()
    assert datetime.date.today().isoformat() in md
    assert "python -m benchmarks.uncertainty --data digits" in md
    assert "## OOD detection: AUROC" in md and "## Adversarial" in md
    assert (tmp_path / "uncertainty_reliability.png").stat().st_size > 5000


def test_unknown_models_are_refused_before_training():
    with pytest.raises(ValueError, match="unknown model"):
        uncertainty.main(["--models", "lenet301-normal:meanfield"])
    with pytest.raises(ValueError, match="guide"):
        uncertainty.main(["--models", "lenet300-normal:sparse-vd"])
