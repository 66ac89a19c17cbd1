"""benchmarks/random_labels.py: the label shuffle, the dropout net, and a tiny run on digits in
which SparseVD prunes and does not fit the random labels."""

import datetime

import pandas as pd
import pytest
import torch
from torch import nn

from benchmarks import random_labels
from zoo import create_model, load
from zoo.models.bnn import build_net

pytestmark = [pytest.mark.benchmark, pytest.mark.usefixtures("one_thread")]

#: SparseVD's training accuracy on random digits labels stays below this; chance (the largest
#: class share of the shuffled labels) is about 0.11 on 500 digits.
SPARSE_VD_TRAIN_ACC_BOUND = 0.25


def test_shuffle_keeps_the_class_counts_and_the_test_labels():
    data = load("digits")
    shuffled = random_labels.shuffle_labels(data, seed=3)
    assert torch.equal(torch.bincount(shuffled.y_train), torch.bincount(data.y_train))
    assert (shuffled.y_train != data.y_train).float().mean() > 0.8
    assert torch.equal(shuffled.y_test, data.y_test)
    assert torch.equal(shuffled.x_train, data.x_train)


def test_dropout_net_drops_before_every_linear_layer_and_is_the_plain_net_in_eval():
    data = load("digits")
    config = create_model("lenet300-loguniform", data=data, hidden=(20, 10)).config
    plain = build_net(config, data.info)
    net = random_labels.dropout_net(plain, 0.2, 0.5)
    rates = [m.p for m in net if isinstance(m, nn.Dropout)]
    assert rates == [0.2, 0.5, 0.5]
    linears = [i for i, m in enumerate(net) if isinstance(m, nn.Linear)]
    assert all(isinstance(net[i - 1], nn.Dropout) for i in linears)
    net.eval()
    torch.testing.assert_close(net(data.x_test), plain(data.x_test))


def test_tiny_run_sparse_vd_prunes_and_stays_below_the_bound(tmp_path):
    """500 digits with shuffled labels, a 64-100-10 net, 40 epochs: SparseVD's sparsity rises
    (above 90% at the end, from under 10% after the first epoch) and its training accuracy stays
    below SPARSE_VD_TRAIN_ACC_BOUND at every evaluation; both test accuracies stay near chance
    (below 0.3: nothing about the true labels is learnable from shuffled ones)."""
    argv = "--data digits --train-subset 500 --hidden 100 --num-epochs 40 --eval-every 5".split()
    argv += ["--threads", "1", "--no-progress", "--out", str(tmp_path)]
    curves = random_labels.main(argv)
    svd = curves[curves["method"] == "SparseVD"]
    assert svd["epoch"].tolist() == [1, 5, 10, 15, 20, 25, 30, 35, 40]
    assert svd["sparsity"].iloc[0] < 0.1 and svd["sparsity"].iloc[-1] > 0.9
    assert svd["sparsity"].iloc[-1] > svd["sparsity"].iloc[len(svd) // 2 - 2]
    assert (svd["train_acc"] < SPARSE_VD_TRAIN_ACC_BOUND).all()
    assert (curves["test_acc"] < 0.3).all()
    dense = curves[curves["method"] == "dense + binary dropout"]
    assert (dense["sparsity"] == 0).all() and len(dense) == len(svd)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "random_labels.csv"), curves)
    md = (tmp_path / "random_labels.md").read_text()
    assert datetime.date.today().isoformat() in md
    assert "python -m benchmarks.random_labels --data digits" in md
    assert "## Poster format" in md and "## Verdict" in md
    assert "SparseVD sparsity -> 100% (>= 99%)" in md
    assert (tmp_path / "random_labels.png").stat().st_size > 5000


def test_bad_settings_are_refused():
    with pytest.raises(SystemExit):
        random_labels.main(["--dropout", "1.0"])
    with pytest.raises(SystemExit):
        random_labels.main(["--eval-every", "0"])
