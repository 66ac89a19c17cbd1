"""Smoke test of benchmarks/recurrent.py with tiny settings (the real run is not a timed test)."""

import datetime

import pandas as pd
import pytest
import torch

from benchmarks import recurrent

pytestmark = [pytest.mark.benchmark, pytest.mark.usefixtures("one_thread")]


def test_tiny_run_writes_the_table_and_exports_a_plain_lstm(tmp_path):
    """digits read row by row (8 steps of 8 pixels), hidden 8, one epoch on 300 examples: both
    rows, the per-matrix sparsities of the report, and the compression they imply."""
    argv = ["--data", "digits", "--hidden", "8", "--num-epochs", "1", "--train-subset", "300"]
    argv += ["--no-progress", "--threads", "1", "--out", str(tmp_path)]
    table = recurrent.main(argv)
    assert list(table["method"]) == ["dense LSTM (PyTorch)", "sparse VD LSTM, exported"]
    csv = pd.read_csv(tmp_path / "recurrent.csv")
    assert len(csv) == 2 and csv["accuracy_%"].between(0, 100).all()
    md = (tmp_path / "recurrent.md").read_text()
    assert datetime.date.today().isoformat() in md
    assert "python -m benchmarks.recurrent --data digits" in md
    assert "net.lstm.weight_hh_l0" in md
    sparse = table.iloc[1]
    sparsities = [float(v) for v in sparse["sparsity_ih/hh/head_%"].split(" / ")]
    weights = [32 * 8, 32 * 8, 10 * 8]  # weight_ih (4 gates x 8, 8 pixels), weight_hh, head
    kept = sum(round(w * (1 - s / 100)) for w, s in zip(weights, sparsities, strict=True))
    assert sparse["compression"] == pytest.approx(sum(weights) / kept, rel=1e-2)


def test_row_lstm_reads_rows_as_time_steps():
    """RowLSTM's output is nn.LSTM over the image's rows, then the head on the last step."""
    torch.manual_seed(0)
    net = recurrent.RowLSTM(hidden=5, rows=4, width=3, classes=2)
    x = torch.randn(6, 1, 4, 3)
    out, _ = net.lstm(x[:, 0])
    torch.testing.assert_close(net(x), net.head(out[:, -1]), rtol=0, atol=0)


def test_bad_epochs_are_refused():
    with pytest.raises(SystemExit):
        recurrent.main(["--num-epochs", "0"])
