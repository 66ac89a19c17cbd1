"""Smoke test of ``benchmarks.meanfield_init`` on tiny settings (digits subset, 2 epochs)."""

import math

import pandas as pd
import pytest

from benchmarks.meanfield_init import main

pytestmark = pytest.mark.benchmark


def test_one_row_per_initial_scale_with_the_rule_s_initial_scales(tmp_path):
    argv = "--entry logreg --num-epochs 2 --train-subset 200 --num-samples 10".split()
    argv += ["--scales", "1e-3", "--alphas", "0.01", "--threads", "1", "--no-progress"]
    argv += ["--out", str(tmp_path)]
    frame = main(argv)
    assert list(frame["init"]) == ["init_scale=0.001", "init_alpha=0.01"]
    old, rule = frame.iloc[0], frame.iloc[1]
    assert old["init_scale_net.1.weight"] == pytest.approx(1e-3, rel=1e-5)
    # the rule on digits' 64 inputs: sqrt(0.01 / (3 * 64)) = 0.0072 for PyTorch's default
    # init, within the 10% its sample of 640 squared uniforms allows (> 5 s.d.)
    assert rule["init_scale_net.1.weight"] == pytest.approx(math.sqrt(0.01 / 192), rel=0.1)
    for column in ("elbo_per_point", "mean_mi", "elpd_loo", "p_loo", "test_elpd", "accuracy"):
        assert frame[column].map(math.isfinite).all()
    assert (frame["mean_mi"] >= 0).all()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "meanfield_init.csv"), frame)
    md = (tmp_path / "meanfield_init.md").read_text()
    assert "python -m benchmarks.meanfield_init " + " ".join(argv) in md
