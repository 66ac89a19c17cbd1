"""Smoke test of ``benchmarks.compiled_step``: a tiny run on digits writes its table with the
three sides, the compile time, the date, the machine and the command."""

import pytest

from benchmarks import compiled_step

pytestmark = [pytest.mark.benchmark, pytest.mark.usefixtures("one_thread")]


def test_tiny_run_writes_its_table(tmp_path):
    argv = ["--data", "digits", "--reps", "1", "--steps", "2", "--out", str(tmp_path)]
    table = compiled_step.main(argv)
    assert (tmp_path / "compiled_step.md").read_text() == table
    for side in ("| compiled |", "| eager |", "| hand-written |"):
        assert side in table
    assert "compile time" in table and "benchmarks.compiled_step" in table
