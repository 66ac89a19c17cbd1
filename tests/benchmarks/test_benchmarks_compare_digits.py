"""Smoke test of benchmarks/compare_digits.py (the main job's committed results) on a tiny
digits subset, into tmp_path (not timed)."""

import datetime

import pandas as pd
import pytest

from benchmarks import compare_digits
from zoo.compare import COLUMNS, TRUST_OK
from zoo.compare.trust import ranking_elpd

pytestmark = [pytest.mark.benchmark, pytest.mark.usefixtures("one_thread")]


def test_tiny_run_writes_the_results_and_their_readme(tmp_path):
    argv = ["--models", "logreg:meanfield", "lenet300-normal:meanfield", "--num-train", "300"]
    argv += "--num-epochs 1 --num-samples 20 --nuts-samples 15 --nuts-warmup 15".split()
    argv += ["--threads", "1", "--no-progress", "--out", str(tmp_path)]
    table = compare_digits.main(argv)
    assert list(table.columns) == list(COLUMNS)
    assert sorted(table["guide"]) == ["meanfield", "meanfield", "nuts"]
    trusted = table["trust"].eq(TRUST_OK)
    assert trusted.tolist() == sorted(trusted, reverse=True)  # trusted rows first
    for _, group in table.groupby(trusted):
        assert ranking_elpd(group).is_monotonic_decreasing
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "compare.csv"), table, check_dtype=False)
    for name in ("compare.md", "compare_plot.png", "reliability.png"):
        assert (tmp_path / name).stat().st_size > 500, name
    readme = (tmp_path / "README.md").read_text()
    assert datetime.date.today().isoformat() in readme
    assert "python -m benchmarks.compare_digits --models logreg:meanfield" in readme
    assert "- machine: " in readme and "torch threads: 1" in readme
    assert (tmp_path / "compare.md").read_text() in readme
