"""TrainConfig.validate: Pyro's validation off for one run, and back to what it was after."""

import pyro
import pytest
import torch

from zoo import create_model
from zoo.train import DivergenceError, fit


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
