"""The trainer's public seam: ``Trainer.step()`` is the exact step ``fit`` takes.

Exact on the CPU: the same seed and settings must give bit-identical parameters and losses
(``torch.equal``, ``==``), since both sides run the same operations on the same random stream.
"""

import math

import pandas as pd
import pyro
import pytest
import torch

from zoo import DivergenceError, Trainer, create_model, fit
from zoo.train import TrainConfig


def _config(**kw):
    # a KL warm-up (the annealing handler), a decaying lr (the scheduler) and clipping: every
    # part of the step is exercised
    base = dict(
        num_epochs=3,
        batch_size=128,
        lr=0.05,
        lr_schedule="linear",
        kl_warmup_end=2.0,
        clip_norm=50.0,
        progress=False,
        eval_every=0,
        seed=3,
    )
    base.update(kw)
    return TrainConfig(**base)


def _model(data, name="ppca"):
    # the amortized guide draws z, so the random stream matters as much as the parameters;
    # bpca adds the post_step hook (the ARD update)
    guide = {"guide": "amortized"} if name == "ppca" else {}
    return create_model(name, data=data, latent_dim=3, seed=0, **guide)


@pytest.mark.parametrize("name", ["ppca", "bpca"])
def test_steps_are_fits_steps_bit_for_bit(ppca_data, name):
    reference = _model(ppca_data, name)
    result = fit(reference, ppca_data, config=_config())
    assert result.steps == 21  # 3 epochs of ceil(800 / 128)

    zm = _model(ppca_data, name)
    trainer = Trainer(zm, ppca_data, config=_config())
    losses = [trainer.step() for _ in range(21)]
    assert losses == result.losses and trainer.losses == result.losses
    assert trainer.steps == 21
    for p, q in zip(reference.parameters(), zm.parameters(), strict=True):
        assert torch.equal(p, q)
    for a, b in zip(reference.model.buffers(), zm.model.buffers(), strict=True):
        assert torch.equal(a, b)
    assert trainer.optimizer.param_groups[0]["lr"] == result.history["lr"].iloc[-1]


def test_steps_then_run_is_one_unbroken_fit(ppca_data, tmp_path):
    # steps taken by hand mid-epoch count in that epoch's row, checkpoints and metrics
    reference = _model(ppca_data)
    expected = fit(reference, ppca_data, config=_config(out_dir=str(tmp_path / "a")))

    zm = _model(ppca_data)
    trainer = Trainer(zm, ppca_data, config=_config(out_dir=str(tmp_path / "b")))
    for _ in range(4):
        trainer.step()
    row = trainer.fit_epoch()
    assert row == {**trainer.history[0]} and row["step"] == 7
    result = trainer.run()
    assert result.steps == expected.steps and result.losses == expected.losses
    pd.testing.assert_frame_equal(
        result.history.drop(columns="seconds"), expected.history.drop(columns="seconds")
    )
    for p, q in zip(reference.parameters(), zm.parameters(), strict=True):
        assert torch.equal(p, q)
    a, b = (pd.read_csv(tmp_path / d / "metrics.csv").drop(columns="seconds") for d in "ab")
    pd.testing.assert_frame_equal(a, b)


def test_the_phases_of_a_step_are_the_step(ppca_data):
    # next_batch, backward, update: what a benchmark that looks at the gradients runs (one
    # trainer after the other: both draw from the global random stream, which each seeds)
    whole = Trainer(_model(ppca_data), ppca_data, config=_config())
    losses = [whole.step() for _ in range(9)]  # across an epoch's end: a new permutation
    parts = Trainer(_model(ppca_data), ppca_data, config=_config())
    for loss in losses:
        xb, yb = parts.next_batch()
        assert parts.backward(xb, yb) / parts.num_data == loss
        parts.update()
    assert parts.steps == whole.steps == 9
    for p, q in zip(whole.params, parts.params, strict=True):
        assert torch.equal(p, q)


def test_the_minibatch_is_the_epochs_permutation_sliced(ppca_data):
    trainer = Trainer(_model(ppca_data), ppca_data, config=_config(batch_size=300))
    perm = torch.randperm(800, generator=torch.Generator().manual_seed(3 * 1_000_003 + 1))
    for _ in range(3):  # epoch 0 is 3 steps (300, 300, 200)
        trainer.step()
    xb, yb = trainer.next_batch()
    assert yb is None and torch.equal(xb, ppca_data.x_train[perm[:300]])


def test_step_raises_divergence_like_fit(ppca_data):
    def poisoned():
        zm = _model(ppca_data)
        original, calls = zm.model.forward, []

        def forward(*args, **kwargs):
            calls.append(1)
            if len(calls) > 5:
                pyro.factor("poison", torch.tensor(float("nan")))
            return original(*args, **kwargs)

        zm.model.forward = forward
        return zm

    message = r"diverged at step 5 \(epoch 0, batch 5\): loss nan.*No checkpoint"
    with pyro.validation_enabled(False), pytest.raises(DivergenceError, match=message) as fitted:
        fit(poisoned(), ppca_data, config=_config())
    zm = poisoned()  # its guide's lazy set-up call runs the guide only, not the model
    trainer = Trainer(zm, ppca_data, config=_config())
    for _ in range(5):
        assert math.isfinite(trainer.step())
    before = [p.detach().clone() for p in zm.parameters()]
    with pyro.validation_enabled(False), pytest.raises(DivergenceError, match=message) as err:
        trainer.step()
    assert err.value.step == fitted.value.step == 5 and err.value.checkpoint is None
    assert str(err.value) == str(fitted.value)
    assert trainer.steps == 5 and len(trainer.losses) == 5  # nothing was counted or updated
    for p, q in zip(before, zm.parameters(), strict=True):
        assert torch.equal(p, q)


def test_step_applies_the_runs_validation_setting_and_restores_it(ppca_data):
    zm = _model(ppca_data)
    seen = []
    original = zm.model.forward

    def forward(*args, **kwargs):
        seen.append(pyro.infer.util.is_validation_enabled())
        return original(*args, **kwargs)

    zm.model.forward = forward
    trainer = Trainer(zm, ppca_data, config=_config(validate=False))
    trainer.step()
    assert seen == [False] and pyro.infer.util.is_validation_enabled()


def test_checkpoints_need_an_out_dir(ppca_data):
    trainer = Trainer(_model(ppca_data), ppca_data, config=_config())
    with pytest.raises(ValueError, match="needs out_dir"):
        trainer.save_checkpoint()
    with pytest.raises(ValueError, match="resume needs out_dir"):
        trainer.resume()


def test_fit_is_the_trainers_run(ppca_data):
    # the lazy export and fit's composition
    import zoo

    assert zoo.Trainer is Trainer
    result = Trainer(_model(ppca_data), ppca_data, config=_config(num_epochs=1)).run()
    assert result.steps == 7 and len(result.history) == 1 and len(result.losses) == 7
