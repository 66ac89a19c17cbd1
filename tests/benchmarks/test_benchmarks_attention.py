"""Smoke test of ``benchmarks.attention`` on tiny settings (both sources, two epochs)."""

import datetime
import math

import pandas as pd
import pytest

from benchmarks.attention import METHODS, main

pytestmark = [pytest.mark.benchmark, pytest.mark.usefixtures("one_thread")]

TINY = (
    "--num-train 100 --num-test 60 --num-epochs 2 --batch-size 50 --var-draws 8 --var-warmup 4"
    " --timing-steps 4 --timing-rounds 2 --maps 3 --threads 1 --no-progress"
).split()


def test_tiny_run_writes_its_tables_and_maps(tmp_path):
    argv = [*TINY, "--out", str(tmp_path)]
    tables = main(argv)

    md = (tmp_path / "attention.md").read_text()
    assert datetime.date.today().isoformat() in md.split("## Settings")[0]
    assert "python -m benchmarks.attention " + " ".join(argv) in md
    for name in ("attention.csv", "attention_curves.csv", "attention_grad_variance.csv"):
        assert (tmp_path / name).is_file(), name
    final = tables["final"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "attention.csv"), final)
    assert set(final["source"]) == {"digits", "fashion-mnist"}
    assert list(final["method"].unique()) == list(METHODS)
    for column in ("accuracy", "attention_accuracy", "attention_entropy", "ms_per_step"):
        assert final[column].map(math.isfinite).all(), column
    # the attention's entropy lies between 0 and log K
    assert final["attention_entropy"].between(0, math.log(9) + 1e-6).all()
    assert (final["steps_to_95"] <= final["steps"]).all()
    assert len(list((tmp_path / "maps").glob("*.png"))) == 2 * len(METHODS)

    variance = tables["variance"].set_index(["source", "parameters", "method"])
    for key, row in variance.iterrows():
        if key[2] in ("soft", "enum"):
            # exact gradients: no noise, and the mean is the exact gradient itself
            assert row["variance"] == 0, key
            assert row["max_abs_error"] <= 1e-4 * max(1.0, row["exact_gradient_norm"]), key
        else:
            assert row["variance"] > 0, key
            # unbiased: the mean is as far from the exact gradient as the noise explains
            # (about 1; 8 draws make it a loose check)
            assert row["bias_z"] < 4, key
    timing = tables["timing"]
    assert len(timing) == 2 * (len(METHODS) + 1)
    assert (timing["ms_per_step"] > 0).all()
    assert (timing["min_ms"] <= timing["ms_per_step"]).all()
    assert (timing["ms_per_step"] <= timing["max_ms"]).all()


def test_enum_is_required(tmp_path):
    with pytest.raises(SystemExit):
        main(["--methods", "soft", "--out", str(tmp_path)])
