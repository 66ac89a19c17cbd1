"""Silent wrong results that must not happen (issue 17, items 1, 6 and 9): resuming on other
data of the same shape, regression targets of shape (N, 1), and evaluating a checkpoint trained
on IDX files from a folder given relative to another working directory."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import zoo
from zoo import data as zdata
from zoo.cli import main
from zoo.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _classes(seed: int, n: int = 90) -> zdata.Dataset:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=gen)
    return zdata.from_tensors(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long())


def test_resume_refuses_other_data_of_the_same_shape_and_size(tmp_path):
    """Item 1: same shape, same size, other values: resume names both fingerprints."""
    first, other = _classes(0), _classes(1)
    assert first.x_train.shape == other.x_train.shape
    cfg = TrainConfig(num_epochs=2, batch_size=30, progress=False, out_dir=str(tmp_path))
    zm = zoo.create_model("logreg", data=first, seed=0)
    zoo.fit(zm, first, config=cfg)
    again = zoo.create_model("logreg", data=other, seed=0)
    resume = dataclasses.replace(cfg, resume=True, num_epochs=2)
    expected = zdata.fingerprint(other.x_train, other.y_train)
    recorded = zdata.fingerprint(first.x_train, first.y_train)
    with pytest.raises(ValueError, match=rf"fingerprint {recorded} → now {expected}"):
        zoo.fit(again, other, config=resume)


def test_regression_targets_n_by_1_train_exactly_like_n():
    """Item 6: y of shape (N, 1) is the same data as y of shape (N,): the same seed gives
    bit-identical parameters; a (N, 2) target is refused."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(80, 3, generator=gen)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(80, generator=gen)
    fits = []
    for target in (y, y[:, None]):
        data = zdata.from_tensors(x, target)
        zm = zoo.create_model("mlp-regressor-normal", data=data, hidden=(8,), seed=0)
        zoo.fit(zm, x, target, num_epochs=3, batch_size=20, progress=False, seed=0)
        fits.append(list(zm.parameters()))
    for p, q in zip(*fits, strict=True):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match=r"\(80, 2\)"):
        zdata.from_tensors(x, torch.stack([y, y], 1))


def _write_mnist(folder, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for n, prefix in ((40, "train"), (12, "t10k")):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        zdata.write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        zdata.write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)


def test_evaluate_a_run_trained_with_a_relative_data_dir_from_another_folder(
    tmp_path, monkeypatch, capsys
):
    """Item 9: `zoo train --data mnist --data-dir DIR` then `zoo evaluate` from elsewhere: the
    checkpoint records the folder's absolute path; other files in that folder are refused."""
    work = tmp_path / "work"
    _write_mnist(work / "idx", seed=0)
    monkeypatch.chdir(work)
    train = ["train", "logreg", "--data", "mnist", "--data-dir", "idx", "--num-epochs", "1"]
    assert main([*train, "--out", "run", "--no-progress", "--no-plots"]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["evaluate", str(work / "run"), "--no-plots"]) == 0
    assert "after" in capsys.readouterr().out
    _write_mnist(work / "idx", seed=1)  # the same shapes, other values
    assert main(["evaluate", str(work / "run"), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "fingerprint" in err and str(work / "idx") in err
