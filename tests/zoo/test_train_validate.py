"""TrainConfig.validate: Pyro's validation where it catches errors (the first steps of a run,
evaluation, a diverged step computed again), off for a whole run, and back to what it was after
(zoo.train.validation)."""

import pyro
import pytest
import torch

from zoo import Trainer, create_model
from zoo.train import DivergenceError, fit
from zoo.train.validation import VALIDATED_STEPS, step_validation


def test_without_validation_nan_parameters_stop_the_run_as_a_nan_loss(ppca_data):
    zm = create_model("ppca", data=ppca_data, latent_dim=3, seed=0)
    seen = []
    original = zm.model.forward

    def forward(*args, **kwargs):
        seen.append(pyro.infer.util.is_validation_enabled())
        if len(seen) > 3:
            with torch.no_grad():
                zm.model.mu_unconstrained.fill_(float("nan"))
        return original(*args, **kwargs)

    zm.model.forward = forward
    assert pyro.infer.util.is_validation_enabled()
    # with validation on, the same poison is "a distribution got invalid parameters"
    # (tests/test_train.py); without, no distribution checks it and the loss is NaN
    with pytest.raises(DivergenceError, match=r"step 3 .*loss nan"):
        fit(zm, ppca_data, num_epochs=1, batch_size=128, progress=False, validate=False)
    assert seen and not any(seen)
    assert pyro.infer.util.is_validation_enabled()  # restored after the run


def _recording(zm) -> list[bool]:
    seen = []
    original = zm.model.forward

    def forward(*args, **kwargs):
        seen.append(pyro.infer.util.is_validation_enabled())
        return original(*args, **kwargs)

    zm.model.forward = forward
    return seen


def test_the_first_steps_of_a_run_are_validated_and_the_rest_not(ppca_data):
    zm = create_model("ppca", data=ppca_data, latent_dim=3, seed=0)
    seen = _recording(zm)
    trainer = Trainer(zm, ppca_data, num_epochs=1, batch_size=128, progress=False, eval_every=0)
    for _ in range(5):
        trainer.step()
    assert seen == [True] * VALIDATED_STEPS + [False] * (5 - VALIDATED_STEPS)
    assert pyro.infer.util.is_validation_enabled()
    # a trainer (a resumed run, say) validates its own first steps again
    seen.clear()
    again = Trainer(zm, ppca_data, num_epochs=1, batch_size=128, progress=False, eval_every=0)
    again.step()
    assert seen == [True]


def test_evaluation_inside_a_run_is_validated(ppca_data):
    zm = create_model("ppca", data=ppca_data, latent_dim=3, seed=0)
    seen = []
    fit(
        zm,
        ppca_data,
        num_epochs=3,
        batch_size=800,
        progress=False,
        on_epoch=lambda zm: seen.append(pyro.infer.util.is_validation_enabled()) or {},
    )
    assert seen == [True, True, True]  # steps 3 to 5 were not validated, the epochs' ends are


@pytest.mark.parametrize("at", [0, VALIDATED_STEPS + 2])
def test_invalid_parameters_are_named_whether_the_step_was_validated_or_not(ppca_data, at):
    # at step 0 Pyro's validation refuses them; later the NaN loss is computed again, validated
    zm = create_model("ppca", data=ppca_data, latent_dim=3, seed=0)
    seen = _recording(zm)
    original = zm.model.forward

    def forward(*args, **kwargs):
        if len(seen) >= at:
            with torch.no_grad():
                zm.model.mu_unconstrained.fill_(float("nan"))
        return original(*args, **kwargs)

    zm.model.forward = forward
    with pytest.raises(DivergenceError, match=rf"step {at} .*invalid parameters: "):
        fit(zm, ppca_data, num_epochs=1, batch_size=100, progress=False, eval_every=0)
    assert pyro.infer.util.is_validation_enabled()


def test_step_validation_is_off_after_the_first_steps_or_without_validate():
    with step_validation(True, 0):
        assert pyro.infer.util.is_validation_enabled()
    for validate, taken in ((True, VALIDATED_STEPS), (False, 0)):
        with step_validation(validate, taken):
            assert not pyro.infer.util.is_validation_enabled()
    assert pyro.infer.util.is_validation_enabled()
