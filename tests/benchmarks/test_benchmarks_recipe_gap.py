"""Smoke test of benchmarks/recipe_gap.py with tiny settings (the real run is not a timed test)."""

import datetime

import pandas as pd
import pytest

from benchmarks import recipe_gap

pytestmark = [pytest.mark.benchmark, pytest.mark.usefixtures("one_thread")]


def test_tiny_run_writes_the_table_and_resumes_finished_variants(tmp_path):
    argv = ["--data", "digits", "--num-epochs", "4", "--validation", "300"]
    argv += ["--variants", "recipe", "pretrain", "--out", str(tmp_path)]
    table = recipe_gap.main(argv)
    assert list(table["variant"]) == ["dense (PyTorch)", "recipe", "pretrain"]
    # every run spends the same budget: dense epochs first plus SparseVD epochs
    assert (table["dense_epochs_first"] + table["sparsevd_epochs"] == 4).all()
    assert list(table["dense_epochs_first"]) == [4, 0, 1]
    assert table["val_gap_points"].iloc[1] == pytest.approx(
        table["val_error_%"].iloc[1] - table["val_error_%"].iloc[0]
    )
    md = (tmp_path / "recipe_gap.md").read_text()
    assert datetime.date.today().isoformat() in md and "## Verdicts" in md
    again = recipe_gap.main([*argv, "--resume"])  # finished variants are read, not retrained
    # the errors and compressions are those of the first run (seconds: the dense one re-timed)
    pd.testing.assert_frame_equal(again.drop(columns="seconds"), table.drop(columns="seconds"))


def test_validation_split_is_carved_from_the_training_data():
    import torch

    from zoo import load

    data = load("digits", device=torch.device("cpu"))
    val = recipe_gap.split(data, 300)
    assert val.num_train == data.num_train - 300 and val.num_test == 300
    assert torch.equal(val.x_test, data.x_train[-300:])
    with pytest.raises(ValueError, match="leaves none"):
        recipe_gap.split(data, data.num_train)
