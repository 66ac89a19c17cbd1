"""The compiled step (``compile=True``, :mod:`zoo.train.compiled`): equal to the eager step for
seeded noise, a fit whose loss curve follows eager's, and the refusals with their reasons.

Inductor's compile takes seconds on the CPU, so one compiled trainer serves the module.
``torch._inductor.config.fallback_random`` makes Inductor draw its random numbers as eager
torch does, so the same seed gives the same noise on both sides.
"""

import dataclasses

import pytest
import torch
import torch._inductor.config as inductor_config
from torch import nn

from zoo import Trainer, create_model, fit, from_module, load
from zoo.train.compiled import neg_elbo, unsupported_reason
from zoo.util import local_params

N_TRAIN = 1000  # ten minibatches of 100: one minibatch shape, one compile


@pytest.fixture(scope="module")
def data():
    full = load("digits")
    return dataclasses.replace(full, x_train=full.x_train[:N_TRAIN], y_train=full.y_train[:N_TRAIN])


def _trainer(data, compile: bool) -> Trainer:
    zm = create_model("logreg", data=data, seed=0)
    return Trainer(
        zm, data, progress=False, eval_every=0, batch_size=100, validate=False, compile=compile
    )


@pytest.fixture(scope="module")
def compiled(data):
    with inductor_config.patch(fallback_random=True):
        trainer = _trainer(data, compile=True)
        xb, yb = trainer.next_batch()
        trainer.compiled.loss_and_grads(xb, yb, 1.0)  # compiles, once for the module
        yield trainer


def test_compiled_loss_and_gradients_equal_pyros_eager_step(data, compiled):
    # Tolerance: float32 reassociation inside Inductor's fused kernels, 1e-5 relative.
    eager = _trainer(data, compile=False)
    xb, yb = eager.next_batch()
    for trainer in (compiled, eager):
        torch.manual_seed(7)
        trainer.loss = trainer.backward(xb, yb)  # -ELBO of Pyro's MeanFieldELBO, eagerly
    assert compiled.loss == pytest.approx(eager.loss, rel=1e-5)
    for pc, pe in zip(compiled.params, eager.params, strict=True):
        assert torch.allclose(pc.grad, pe.grad, rtol=1e-4, atol=1e-5 * pe.grad.abs().max())


def test_beta_is_an_input_and_each_call_draws_fresh_noise(data, compiled):
    xb, yb = compiled.next_batch()
    step = compiled.compiled
    for beta in (0.0, 0.3):  # one graph for every beta: it is not baked in
        torch.manual_seed(3)
        loss = step.loss_and_grads(xb, yb, beta)
        torch.manual_seed(3)
        with local_params(), torch.no_grad():
            model, guide = compiled.zm.callables()
            eager = neg_elbo(model, guide, xb, yb, N_TRAIN, torch.tensor(beta), analytic=True)
        assert loss.item() == pytest.approx(eager.item(), rel=1e-5)
    assert len(step.shapes) == 1
    # no reseed: the graph draws new noise from the global generator at every call
    assert step.loss_and_grads(xb, yb, 1.0).item() != step.loss_and_grads(xb, yb, 1.0).item()


def test_compiled_fit_follows_the_eager_loss_curve(data):
    # Criterion: every epoch's mean loss per example within 2 % of eager's (Monte-Carlo noise
    # differs once the parameters do; measured differences are below 0.2 %).
    curves = {}
    for flag in (False, True):
        zm = create_model("logreg", data=data, seed=0)
        result = fit(
            zm, data, num_epochs=4, batch_size=100, eval_every=0, progress=False, compile=flag
        )
        curves[flag] = result.history["loss"].tolist()
    assert curves[True] == pytest.approx(curves[False], rel=0.02)
    assert curves[True][-1] < curves[True][0]


def test_unsupported_estimators_are_refused_with_the_reason(data):
    assert "enumeration" in unsupported_reason("traceenum", 1, False)
    assert "score-function" in unsupported_reason("tracegraph", 1, False)
    assert "DDP" in unsupported_reason("meanfield", 1, True)
    assert unsupported_reason("meanfield", 1, False) is None
    tiles = load("cluttered-tiles")
    zm = create_model("attention-enum", data=tiles, seed=0)
    with pytest.raises(ValueError, match="not supported for attention-enum: enumeration"):
        Trainer(zm, tiles, progress=False, eval_every=0, compile=True)
    with pytest.raises(ValueError, match="num_particles=2"):
        _trainer_with(data, num_particles=2)


def _trainer_with(data, **overrides) -> Trainer:
    zm = create_model("logreg", data=data, seed=0)
    return Trainer(zm, data, progress=False, eval_every=0, compile=True, **overrides)


class _Branchy(nn.Module):
    """Its forward reads the data's values on the host: data-dependent control flow."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x.flatten(1))
        return out if x.sum() > 0 else -out


def test_data_dependent_control_flow_is_refused(data):
    zm = from_module(_Branchy(), data=data, prior="normal", seed=0)
    with pytest.raises(ValueError, match="cannot be traced into one graph"):
        Trainer(zm, data, progress=False, eval_every=0, compile=True)
