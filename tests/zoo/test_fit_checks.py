"""What fit checks beside the loss: collapse of sparse VD, evaluation that leaves the training
random stream alone, and ZooModel.evaluate on tensors as fit takes them."""

from __future__ import annotations

import pytest
import torch

from zoo import create_model, fit, from_tensors, load
from zoo.train import CollapseWarning, check_collapse

# Sparse VD on digits with a 32-unit hidden layer: 23 steps of 64 per epoch, no KL warm-up.
SMALL = dict(hidden=(32,), seed=0)
RUN = dict(batch_size=64, kl_warmup_start=0, kl_warmup_end=0, progress=False, eval_every=0)


def test_a_collapsed_sparse_vd_run_warns_with_the_cause_and_the_fix():
    data = load("digits")
    zm = create_model("lenet300-loguniform", data=data, **SMALL)
    # a KL weighted 100x from the first step, at lr 0.1: every weight is pruned in 10 epochs
    with pytest.warns(CollapseWarning, match="collapsed") as caught:
        result = fit(zm, data, num_epochs=10, lr=0.1, kl_weight=100.0, **RUN)
    assert len(caught) == 1
    assert result.collapsed and result.collapse == str(caught[0].message)
    for words in ("no KL warm-up", "lr=0.1", "kl_warmup_end", "lower lr", "10 classes"):
        assert words in result.collapse
    train = zm.evaluate(data, "train")
    assert train["sparsity"] >= 0.99 and train["acc"] <= 0.1 + 0.05 + 0.01


def test_a_healthy_sparse_vd_run_does_not_warn():
    data = load("digits")
    zm = create_model("lenet300-loguniform", data=data, **SMALL)
    # the same net, the KL warmed up over 3 of 10 epochs, lr 0.01 (pytest turns warnings
    # into errors: a CollapseWarning would fail this test)
    result = fit(zm, data, num_epochs=10, lr=0.01, **{**RUN, "kl_warmup_end": 3})
    assert not result.collapsed and result.collapse is None
    assert zm.evaluate(data, "train")["acc"] > 0.8
    assert check_collapse(zm, data) is None


def test_the_collapse_check_applies_to_classifiers_reporting_acc_and_sparsity_only():
    # PPCA: unsupervised; logreg: its metrics report sparsity 0, far from collapse
    ppca_data = load("ppca-synthetic")
    assert check_collapse(create_model("ppca", data=ppca_data), ppca_data) is None
    data = load("digits")
    assert check_collapse(create_model("logreg", data=data), data) is None


def test_a_run_with_few_weights_pruned_is_cleared_without_scoring_the_training_set(monkeypatch):
    # the guide's masks say how much is pruned: under 99 %, no collapse, and no evaluation
    data = load("digits")
    zm = create_model("lenet300-normal", data=data, hidden=(16,), seed=0)
    monkeypatch.setattr(zm, "evaluate", lambda *a, **k: pytest.fail("scored the training set"))
    assert check_collapse(zm, data) is None


def _fit_params(eval_every: int, on_epoch=None) -> list[torch.Tensor]:
    data = load("digits")
    zm = create_model("lenet300-loguniform", data=data, hidden=(16,), seed=0)
    fit(
        zm,
        data,
        num_epochs=3,
        batch_size=256,
        lr=0.01,
        progress=False,
        eval_every=eval_every,
        on_epoch=on_epoch,
    )
    return [p.detach().clone() for p in zm.parameters()]


def test_evaluation_during_training_does_not_change_the_fit():
    never = _fit_params(eval_every=0)
    every = _fit_params(eval_every=1)  # MC predictions (eval_samples draws) after each epoch

    def draws(zm):  # an on_epoch callback drawing from torch's global stream
        return {"noise": torch.randn(()).item()}

    with_callback = _fit_params(eval_every=1, on_epoch=draws)
    assert len(never) == len(every) == len(with_callback) > 0
    for a, b, c in zip(never, every, with_callback, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_evaluate_takes_tensors_as_fit_does():
    data = load("digits")
    zm = create_model("logreg", data=data, seed=0)
    fit(zm, data, num_epochs=2, progress=False, eval_every=0)
    x, y = data.x_test, data.y_test
    as_dataset = from_tensors(x, y)
    results = []
    for args in [(as_dataset, "train"), (x, y), ((x, y),), (x.numpy(), y.numpy())]:
        torch.manual_seed(1)  # the MC metrics draw
        results.append(zm.evaluate(*args))
    torch.manual_seed(1)
    results.append(zm.evaluate(x, y=y))
    assert all(r == results[0] for r in results[1:])
    assert set(results[0]) >= {"acc", "nll", "sparsity"}
    torch.manual_seed(1)
    default = zm.evaluate(data)
    torch.manual_seed(1)
    assert default == zm.evaluate(data, "test") == results[0]  # the test split, by default


def test_evaluate_refuses_what_does_not_fit_with_a_clear_message():
    data = load("digits")
    zm = create_model("logreg", data=data)
    x, y = data.x_test, data.y_test
    cases = [
        ((x,), {}, "needs labels y"),
        ((x, "train"), {}, "applies to a Dataset"),
        ((data,), {"y": y}, "inside the Dataset"),
        ((data, "validation"), {}, "split must be 'train' or 'test'"),
        ((x[..., :4], y), {}, "inputs of shape"),
        ((x, y), {"y": y}, "labels given twice"),
        (((x, y, y),), {}, r"\(x,\) or \(x, y\)"),
        ((x, y + 10), {}, "y"),
    ]
    for args, kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            zm.evaluate(*args, **kwargs)
    ppca_data = load("ppca-synthetic")
    ppca = create_model("ppca", data=ppca_data)
    x_test = ppca_data.x_test
    assert ppca.evaluate(x_test) == ppca.evaluate(ppca_data, "test") != {}
    with pytest.raises(ValueError, match="unsupervised"):
        ppca.evaluate(ppca_data.x_test, torch.zeros(len(ppca_data.x_test)))


def test_zoo_train_prints_the_collapse_beside_the_metrics(tmp_path, capsys):
    from zoo.cli import main

    argv = ["train", "lenet300-loguniform", "--data", "digits", "--hidden", "32"]
    argv += ["--num-epochs", "10", "--lr", "0.1", "--kl-weight", "100", "--batch-size", "64"]
    argv += ["--kl-warmup-start", "0", "--kl-warmup-end", "0", "--eval-every", "0"]
    argv += ["--no-plots", "--seed", "0", "--out", str(tmp_path / "run")]
    with pytest.warns(CollapseWarning):
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "WARNING: lenet300-loguniform collapsed" in out
    assert out.index("WARNING") < out.index("sparsity")  # printed above the metrics table
