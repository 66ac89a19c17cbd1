"""Smoke test of benchmarks/structured.py: 1 epoch on 100 Fashion-MNIST images, short timing."""

import datetime

import pandas as pd
import pytest
import torch
from torch import nn

from benchmarks import structured

pytestmark = [pytest.mark.benchmark, pytest.mark.usefixtures("one_thread")]


def test_tiny_run_writes_the_table_the_latency_and_the_verdicts(tmp_path):
    argv = ["--nets", "lenet300", "lenet5", "--train-subset", "100", "--test-subset", "100"]
    argv += ["--dense-epochs", "1", "--num-epochs", "1", "--batches", "1", "64"]
    argv += ["--min-reps", "1", "--no-progress", "--out", str(tmp_path)]
    table = structured.main(argv)
    assert list(table["method"]) == ["dense", "dense (continued)", "sparse VD", "SBP"] * 2
    assert table["error_%"].between(0, 100).all()
    lenet5 = table[table["net"] == "lenet5"].iloc[0]
    assert lenet5["units_kept"] == "20-50-800-500" and lenet5["macs"] == 2293000
    speed = pd.read_csv(tmp_path / "structured_latency.csv")
    assert set(speed["variant"]) == set(structured.VARIANTS)
    assert (speed[["ms@1", "ms@64", "cpu_x@1", "cpu_x@64"]] > 0).all().all()
    dense = speed[speed["variant"] == "dense"]
    assert (dense["x@64"] == 1.0).all()
    md = (tmp_path / "structured.md").read_text()
    assert datetime.date.today().isoformat() in md
    assert "python -m benchmarks.structured --nets lenet300 lenet5" in md
    assert "lenet300 (paper: LeNet-500-300 2.33x)" in md and "batch 64:" in md
    # a second call times the saved nets without training
    again = structured.main([*argv, "--latency-only"])
    assert list(again["error_%"]) == list(table["error_%"])
    assert (tmp_path / "structured_retimed.md").exists()


def test_sparse_linear_and_macs():
    """The CSR layer computes x W^T + b; MACs count every weight, or only the non-zero ones."""
    torch.manual_seed(0)
    layer = nn.Linear(20, 7)
    with torch.no_grad():
        layer.weight[torch.rand(7, 20) < 0.7] = 0.0
    x = torch.randn(5, 20)
    torch.testing.assert_close(structured.SparseLinear(layer)(x), layer(x), atol=1e-6, rtol=0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Flatten(), nn.Linear(108, 5), nn.Linear(5, 4))
    assert structured.macs(net, torch.randn(2, 1, 8, 8)) == 3 * 9 * 36 + 108 * 5 + 5 * 4
    assert structured.units_kept(net) == "3-108-5"  # conv1 outputs, fc1 inputs and outputs


def test_bad_epochs_are_refused():
    with pytest.raises(SystemExit):
        structured.main(["--num-epochs", "0"])
