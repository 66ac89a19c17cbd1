"""Smoke test of ``benchmarks.fit_speed`` on tiny settings, and its hand-written loop's math.

The hand-written loop must compute the zoo's objective: for the same parameters and the same
noise (one seed, drawn in the same order: one ``randn_like`` per layer), its ``-ELBO`` equals
the zoo's to 1e-6 relative (float32 sums taken in another order).
"""

import datetime

import pandas as pd
import pyro
import pytest
import torch

from benchmarks import fit_speed
from benchmarks.common import load_data
from zoo.elbo import make_elbo

pytestmark = [pytest.mark.benchmark, pytest.mark.usefixtures("one_thread")]


def test_tiny_run_writes_its_table_with_date_machine_and_command(tmp_path):
    argv = ["--nets", "digits-mlp", "--epochs", "1", "--reps", "2", "--train-subset", "200"]
    argv += ["--threads", "1", "--out", str(tmp_path), "--note", "smoke"]
    table = fit_speed.main(argv)
    assert list(table["net"]) == ["digits-mlp"] and table["steps"].tolist() == [2]
    assert (table["zoo_s"] > 0).all() and (table["hand_s"] > 0).all()
    low, mid, high = table["zoo/hand_min"], table["zoo/hand"], table["zoo/hand_max"]
    assert ((low <= mid) & (mid <= high)).all()
    assert len(pd.read_csv(tmp_path / "fit_speed.csv")) == 1
    md = (tmp_path / "fit_speed.md").read_text()
    assert datetime.date.today().isoformat() in md and "1 torch thread" in md
    assert "python -m benchmarks.fit_speed --nets digits-mlp --epochs 1" in md
    assert "Note: smoke" in md and "target 1.10" in md
    if fit_speed.peer_available() is None:
        assert (table["peer_s"] > 0).all()
    else:
        assert "peer column left out: bayesian-torch is not installed" in md


def test_the_hand_written_loss_is_the_zoos_for_the_same_parameters_and_noise():
    data = load_data("digits", None, torch.device("cpu"), 300)
    zm = fit_speed.build_zoo(data, (100, 100), seed=0)
    hand = fit_speed.HandWritten(zm)
    x, y, n = data.x_train[:50], data.y_train[:50], data.num_train
    model, guide = zm.callables()
    elbo = make_elbo("meanfield")

    def zoo(seed):
        torch.manual_seed(seed)
        with torch.no_grad(), pyro.validation_enabled(False):
            return elbo.differentiable_loss(model, guide, x, y, num_data=n).item()

    def ref(seed):
        torch.manual_seed(seed)
        with torch.no_grad():
            return hand.neg_elbo(x, y, n, beta=1.0).item()

    assert zoo(1) == pytest.approx(ref(1), rel=1e-6)
    assert ref(2) != ref(1)  # the loss depends on the draw, and both sides drew the same


def test_a_missing_data_set_is_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(fit_speed, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "nowhere")
    argv = ["--nets", "lenet300", "--reps", "1", "--no-peer", "--out", str(tmp_path)]
    table = fit_speed.main(argv)
    assert table.empty
    md = (tmp_path / "fit_speed.md").read_text()
    assert "not measured: lenet300 (fashion-mnist is not on this machine" in md
    assert "peer column left out: --no-peer was given" in md


def test_bad_settings_are_refused():
    with pytest.raises(SystemExit):
        fit_speed.main(["--reps", "0"])
