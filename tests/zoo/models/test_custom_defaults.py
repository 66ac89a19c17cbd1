"""The training defaults of a user's net by data size (issue 21): a sparse-VD net trains for
at least 300,000 examples (more than 30 epochs on small data) with the KL off for the first
third of its epochs and ramped over the second; another prior keeps TRAIN_DEFAULTS.  Checked
through the rule itself, fit's Trainer and ``zoo train``'s recorded config."""

import json
import math

import pytest
import torch

import zoo
from zoo.cli import main
from zoo.data import from_tensors
from zoo.models.custom import (
    SMALL_DATA,
    SMALL_DATA_EXAMPLES,
    TRAIN_DEFAULTS,
    ModuleConfig,
    train_defaults_for_data,
)
from zoo.train import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

NET_FILE = """
from torch import nn


def make_net(info):
    return nn.Sequential(nn.Linear(info.input_shape[0], 8), nn.Tanh(), nn.Linear(8, 3))
"""


def _data(n, d=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n + 30, d, generator=gen)
    y = x[:, :3].argmax(-1)
    return from_tensors(x[:n], y[:n], x_test=x[n:], y_test=y[n:])


def _net():
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


@pytest.mark.parametrize("n", [106, 341, 1600, 2400, SMALL_DATA - 1])
def test_small_data_trains_for_300k_examples_in_thirds(n):
    got = train_defaults_for_data(ModuleConfig(), n)
    epochs = max(30, math.ceil(SMALL_DATA_EXAMPLES / n))
    assert got["num_epochs"] == epochs
    assert got["num_epochs"] * n >= SMALL_DATA_EXAMPLES  # 3000 steps of 100 at least
    # beta = 0 on the first third, 1 on the last: within one epoch of the thirds
    assert abs(got["kl_warmup_start"] - epochs / 3) <= 0.5
    assert abs(got["kl_warmup_end"] - 2 * epochs / 3) <= 0.5
    assert "lr" not in got  # Adam's 1e-3 of TRAIN_DEFAULTS


def test_the_worked_values_of_the_docstring():
    assert train_defaults_for_data(ModuleConfig(), 2400) == {
        "num_epochs": 125,
        "kl_warmup_start": 42,
        "kl_warmup_end": 83,
    }


@pytest.mark.parametrize("n", [SMALL_DATA, 60000])
def test_large_data_trains_30_epochs_in_thirds(n):
    assert train_defaults_for_data(ModuleConfig(), n) == {
        "num_epochs": 30,
        "kl_warmup_start": 10,
        "kl_warmup_end": 20,
    }


@pytest.mark.parametrize("prior", ["normal", "custom"])
def test_other_priors_keep_the_defaults(prior):
    assert train_defaults_for_data(ModuleConfig(prior=prior), 500) == {}


def test_given_epochs_are_cut_in_thirds_and_a_given_warm_up_is_left_alone():
    assert train_defaults_for_data(ModuleConfig(), 600, {"num_epochs": 20}) == {
        "num_epochs": 20,
        "kl_warmup_start": 7,
        "kl_warmup_end": 13,
    }
    got = train_defaults_for_data(ModuleConfig(), 600, {"kl_warmup_end": 0.5})
    assert "kl_warmup_start" not in got and "kl_warmup_end" not in got


def test_fit_takes_the_rule_for_its_data_and_the_callers_fields_win():
    small, large = _data(120), _data(SMALL_DATA)
    sparse = zoo.from_module(_net(), data=small, prior="loguniform", seed=0)
    cfg = Trainer(sparse, small, progress=False, eval_every=0).config
    assert (cfg.num_epochs, cfg.kl_warmup_start, cfg.kl_warmup_end) == (2500, 833, 1667)
    assert (cfg.batch_size, cfg.lr) == (TRAIN_DEFAULTS["batch_size"], TRAIN_DEFAULTS["lr"])
    cfg = Trainer(sparse, small, progress=False, eval_every=0, num_epochs=6, lr=0.01).config
    assert (cfg.num_epochs, cfg.kl_warmup_start, cfg.kl_warmup_end, cfg.lr) == (6, 2, 4, 0.01)
    assert cfg.beta(1.9) == 0.0 and cfg.beta(3.0) == 0.5 and cfg.beta(4.0) == 1.0
    cfg = Trainer(sparse, large, progress=False, eval_every=0).config
    assert (cfg.num_epochs, cfg.kl_warmup_start, cfg.kl_warmup_end) == (30, 10, 20)
    assert (cfg.batch_size, cfg.lr) == (TRAIN_DEFAULTS["batch_size"], TRAIN_DEFAULTS["lr"])
    gauss = zoo.from_module(_net(), data=small, prior="normal", seed=0)
    cfg = Trainer(gauss, small, progress=False, eval_every=0).config
    assert {k: getattr(cfg, k) for k in TRAIN_DEFAULTS} == TRAIN_DEFAULTS


def _train_cli(tmp_path, name, *flags):
    (tmp_path / "nets.py").write_text(NET_FILE)
    data = _data(120)
    rows = ["f0,f1,f2,f3,label"] + [
        ",".join([*(f"{v:.4f}" for v in x.tolist()), str(int(y))])
        for x, y in zip(data.x_train, data.y_train, strict=True)
    ]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / name
    argv = ["train", f"{tmp_path / 'nets.py'}:make_net", "--data", str(tmp_path / "d.csv")]
    argv += ["--target", "label", "--out", str(out), "--no-plots", "--eval-every", "0", *flags]
    assert main(argv) == 0
    return json.loads((out / "config.json").read_text())["train"]


def test_zoo_train_applies_the_rule_to_the_flags_not_given(tmp_path):
    """120 rows (96 after the default test fraction): the flags given stay, the rest follow the
    small-data rule for the loguniform prior and TRAIN_DEFAULTS for the normal one."""
    cfg = _train_cli(tmp_path, "svd", "--num-epochs", "3", "--batch-size", "48")
    assert (cfg["num_epochs"], cfg["batch_size"]) == (3, 48)
    assert (cfg["kl_warmup_start"], cfg["kl_warmup_end"], cfg["lr"]) == (1, 2, 1e-3)
    cfg = _train_cli(tmp_path, "gauss", "--num-epochs", "3", "--prior", "normal", "--lr", "0.02")
    assert (cfg["kl_warmup_start"], cfg["kl_warmup_end"], cfg["lr"]) == (0, 5, 0.02)


def test_the_registry_entries_keep_their_recipes_whatever_the_data_size():
    """The papers' recipes (LeNet-300-100, LeNet-5: benchmarks/sparse_vd.py) are the entries'
    own; the rule is a user's net's only."""
    for name in zoo.list_models("bnn"):
        spec = zoo.get_spec(name)
        assert spec.training_defaults(None, 100) == spec.training_defaults()
