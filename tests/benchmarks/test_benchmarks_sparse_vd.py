"""Smoke test of benchmarks/sparse_vd.py with tiny settings (the real run is not a timed test)."""

import datetime

import pandas as pd
import pytest

from benchmarks import sparse_vd

pytestmark = [pytest.mark.benchmark, pytest.mark.usefixtures("one_thread")]


def test_tiny_run_writes_the_papers_table(tmp_path):
    argv = ["--nets", "lenet300", "--data", "digits", "--num-epochs", "2", "--warm-start"]
    argv += ["--train-subset", "300", "--no-progress", "--out", str(tmp_path)]
    table = sparse_vd.main(argv)
    assert list(table["method"]) == ["dense (PyTorch)", "SparseVD (warm start)"]
    csv = pd.read_csv(tmp_path / "sparse_vd.csv")
    assert len(csv) == 2 and (csv["error_%"].between(0, 100)).all()
    md = (tmp_path / "sparse_vd.md").read_text()
    assert datetime.date.today().isoformat() in md
    assert "python -m benchmarks.sparse_vd --nets lenet300" in md
    assert "## Targets" in md and "lenet300:" in md
    # the table's compression is |W| / |W != 0| of the per-layer report it prints
    svd = table.iloc[1]
    sparsities = [float(v) for v in svd["sparsity_per_layer_%"].split(" / ")]
    assert len(sparsities) == 3
    weights = [64 * 300, 300 * 100, 100 * 10]
    kept = sum(round(w * (1 - s / 100)) for w, s in zip(weights, sparsities, strict=True))
    assert svd["compression"] == pytest.approx(sum(weights) / kept, rel=1e-2)
    assert (tmp_path / "sparse_vd_lenet300_masks" / "layer1_mask.png").exists()


def test_speed_only_times_both_loops(tmp_path):
    argv = ["--speed-only", "--nets", "lenet300", "--data", "digits", "--out", str(tmp_path)]
    table = sparse_vd.main(argv)
    row = table.iloc[0]
    assert row["zoo_ms_per_step"] > 0 and row["handwritten_ms_per_step"] > 0
    assert row["ratio"] == pytest.approx(row["zoo_ms_per_step"] / row["handwritten_ms_per_step"])
    assert (tmp_path / "sparse_vd_speed.md").exists()


def test_bad_epochs_are_refused():
    with pytest.raises(SystemExit):
        sparse_vd.main(["--num-epochs", "0"])


def test_verdicts_name_each_target_and_the_miss():
    """Each net's line says which of its two targets is met and by how much one is missed."""
    dense, svd = {"method": "dense (PyTorch)", "epochs": 200}, {"method": "SparseVD", "epochs": 200}
    table = pd.DataFrame(
        [
            {"net": "lenet300", "error_%": 10.0, "compression": 1.0, **dense},
            {"net": "lenet300", "error_%": 11.5, "compression": 57.6, **svd},
            {"net": "lenet5", "error_%": 8.0, "compression": 1.0, **dense},
            {"net": "lenet5", "error_%": 8.5, "compression": 47.3, **svd},
        ]
    )
    lines = sparse_vd._verdicts(table).splitlines()
    assert lines[2] == (
        "- lenet300: compression 57.6x: met (>= 50x); error 11.50% vs dense 10.00% "
        "(+1.50 points): MISSED by 0.50 points (target <= +1.00)"
    )
    assert lines[3] == (
        "- lenet5: compression 47.3x: MISSED by 52.7x (target 100x); error 8.50% vs dense "
        "8.00% (+0.50 points): met (<= +1.00)"
    )


def test_the_error_target_is_judged_only_on_equal_budgets():
    rows = [
        {"net": "lenet5", "method": "dense (PyTorch)", "epochs": 20, "error_%": 8.2},
        {"net": "lenet5", "method": "SparseVD", "epochs": 100, "error_%": 8.7},
    ]
    line = sparse_vd._verdicts(pd.DataFrame(rows).assign(compression=76.3)).splitlines()[2]
    assert line.endswith("no verdict, unequal budgets (dense 20 epochs, SparseVD 100)")
    rows[1].update(method="SparseVD (warm start)", epochs=20)  # 20 dense epochs, then 20 more
    line = sparse_vd._verdicts(pd.DataFrame(rows).assign(compression=76.3)).splitlines()[2]
    assert "no verdict, unequal budgets" in line and "after the 20 dense epochs" in line


class _Cut(Exception):
    """Stands in for a run killed after an epoch's checkpoint."""


def test_dense_baseline_cut_off_and_resumed_equals_the_uninterrupted_run(tmp_path):
    import torch

    from benchmarks.common import load_data

    data = load_data("digits", None, torch.device("cpu"), 300)
    recipe = sparse_vd.paper_recipe("lenet300", 3, 100)
    whole = sparse_vd.train_dense("lenet300", data, recipe, 0, False)["model"]

    def cut_in_epoch_2(epoch, model):
        if epoch == 2:  # the hook runs before the epoch's checkpoint: epoch 1's is on disk
            raise _Cut

    ckpt = tmp_path / "dense" / "checkpoint.pt"
    with pytest.raises(_Cut):
        sparse_vd.train_dense("lenet300", data, recipe, 0, False, None, cut_in_epoch_2, ckpt)
    resumed = sparse_vd.train_dense("lenet300", data, recipe, 0, False, checkpoint=ckpt)
    resumed_state = resumed["model"].state_dict()
    for name, value in whole.state_dict().items():
        assert torch.equal(value, resumed_state[name]), (
            name
        )  # bit-identical: same Adam, lr schedule and batch order
    # a checkpoint of another recipe is refused, not silently continued
    with pytest.raises(ValueError, match="another recipe"):
        other = sparse_vd.paper_recipe("lenet300", 4, 100)
        sparse_vd.train_dense("lenet300", data, other, 0, False, checkpoint=ckpt)


def test_only_sides_then_resume_writes_the_table(tmp_path):
    common = ["--nets", "lenet300", "--data", "digits", "--num-epochs", "1"]
    common += ["--train-subset", "200", "--no-progress", "--out", str(tmp_path)]
    assert sparse_vd.main([*common, "--only", "dense"]).empty
    assert sparse_vd.main([*common, "--only", "sparse-vd"]).empty
    assert not (tmp_path / "sparse_vd.md").exists()
    table = sparse_vd.main([*common, "--resume"])  # both finished: loaded, not retrained
    assert list(table["method"]) == ["dense (PyTorch)", "SparseVD"]
    assert (table["seconds"] > 0).all()  # the earlier invocations' training time, kept
