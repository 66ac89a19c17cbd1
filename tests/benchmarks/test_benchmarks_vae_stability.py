"""Smoke test of ``benchmarks.vae_stability`` on tiny settings (digits, a few steps)."""

import math

import pandas as pd
import pytest

from benchmarks.vae_stability import main, summarize

pytestmark = pytest.mark.benchmark


def test_tiny_grid_writes_one_summary_row_per_run(tmp_path):
    argv = "--data digits --entry vae-digits --steps 30 --log-every 10 --seeds 0 1".split()
    argv += ["--lrs", "1e-3", "--floors", "1e-4", "1e-2", "--probe-size", "50"]
    argv += ["--threads", "1", "--no-progress", "--out", str(tmp_path)]
    tables = main(argv)
    steps, summary = tables["steps"], tables["summary"]
    assert len(summary) == 4 and len(steps) == 4 * 3
    assert set(summary["encoder_min_scale"]) == {1e-4, 1e-2}
    # the floor holds: no logged scale is below the run's floor
    assert (steps["min_scale"] >= steps["encoder_min_scale"] * (1 - 1e-6)).all()
    assert (steps["min_scale"] <= steps["q001_scale"]).all()
    assert steps[["loss", "kl", "grad_norm"]].map(math.isfinite).all().all()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "vae_stability.csv"), steps)
    md = (tmp_path / "vae_stability.md").read_text()
    assert "python -m benchmarks.vae_stability " + " ".join(argv) in md


def test_a_run_is_diverged_from_its_first_step_over_the_kl_limit():
    steps = pd.DataFrame(
        {
            "estimator": "score",
            "lr": 1e-3,
            "encoder_min_scale": 1e-4,
            "seed": [0, 0, 0, 1, 1, 1],
            "step": [10, 20, 30, 10, 20, 30],
            "loss": 1.0,
            "grad_norm": [1.0, 5.0, 2.0, 1.0, 1.0, 1.0],
            "kl": [20.0, 150.0, 40.0, 20.0, 30.0, 99.0],
            "min_scale": [0.5, 1e-4, 0.1, 0.5, 0.4, 0.3],
            "q001_scale": 0.5,
        }
    )
    summary = summarize(steps, kl_limit=100.0).set_index("seed")
    assert bool(summary.loc[0, "diverged"]) and summary.loc[0, "first_step_over_limit"] == 20
    assert summary.loc[0, "max_kl"] == 150.0 and summary.loc[0, "final_kl"] == 40.0
    assert summary.loc[0, "min_scale"] == 1e-4 and summary.loc[0, "max_grad_norm"] == 5.0
    assert not bool(summary.loc[1, "diverged"])
    assert summary.loc[1, "max_kl"] == pytest.approx(99.0)


def test_a_non_vae_entry_and_bad_settings_are_refused(tmp_path):
    out = ["--out", str(tmp_path)]
    for bad in (["--entry", "ppca"], ["--lrs", "0"], ["--floors", "-1e-4"], ["--clip-norm", "0"]):
        with pytest.raises(SystemExit):
            main([*bad, *out])
    assert not any(tmp_path.iterdir())  # refused before anything is written
