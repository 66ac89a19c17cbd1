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


def test_warm_start_gives_the_dense_lstms_outputs():
    """After sparse_vd.warm_start, the guide's mean net (nothing pruned) is the trained dense
    net: every weight matrix and the LSTM's bias_ih/bias_hh and the head's bias copied.
    Tolerance: 1e-6 (float32, the same ops)."""
    from benchmarks.sparse_vd import warm_start
    from zoo import from_module, load
    from zoo.models.weights import mean_net_outputs

    data = load("digits")
    torch.manual_seed(0)
    dense = recurrent.RowLSTM(hidden=6, rows=8, width=8, classes=10)
    with torch.no_grad():  # not the initialization the sparse model starts from
        for p in dense.parameters():
            p.add_(0.3 * torch.randn_like(p))
    torch.manual_seed(1)
    fresh = recurrent.RowLSTM(hidden=6, rows=8, width=8, classes=10)
    zm = from_module(fresh, data=data, prior="loguniform", guide="sparse-vd", seed=0)
    x = data.x_test[:50]
    assert not torch.allclose(mean_net_outputs(zm, x, threshold=1e9), dense(x), atol=1e-3)
    warm_start(zm, dense)
    torch.testing.assert_close(mean_net_outputs(zm, x, threshold=1e9), dense(x), rtol=0, atol=1e-6)
