"""KLAnnealing in a plain Pyro loop: the loss is -log p(x) + beta * KL, with beta on schedule."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, TraceMeanField_ELBO
from torch.distributions import constraints

from zoo import Trainer, create_model, load
from zoo.handlers import KLAnnealing, linear_warmup

X = torch.tensor(0.7)


def model():
    pyro.sample("z", dist.Normal(0.0, 1.0))
    # the observation does not depend on z: the loss is deterministic under the analytic KL
    pyro.sample("x", dist.Normal(0.0, 1.0), obs=X)


def guide():
    loc = pyro.param("loc", torch.tensor(1.0))
    scale = pyro.param("scale", torch.tensor(0.5), constraint=constraints.positive)
    pyro.sample("z", dist.Normal(loc, scale))


def closed_form_loss(beta: float, m: float, s: float) -> float:
    """-log N(x | 0, 1) + beta * KL(N(m, s) || N(0, 1))."""
    nll = 0.5 * math.log(2 * math.pi) + 0.5 * X.item() ** 2
    kl = -math.log(s) + 0.5 * (s**2 + m**2) - 0.5
    return nll + beta * kl


def test_linear_schedule_values_and_its_checks():
    beta = linear_warmup(2, 6, final=0.5)
    assert [beta(t) for t in (0, 1.9, 2, 4, 6, 100)] == [0, 0, 0, 0.25, 0.5, 0.5]
    assert linear_warmup(0, 0)(0) == 1.0  # no warm-up
    anneal = KLAnnealing.linear(end=4)
    assert anneal.beta == 0.0
    assert [anneal.step() for _ in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert anneal.set_step(2) == 0.5 and anneal.steps == 2
    for bad in [dict(start=3, end=2), dict(start=-1, end=2), dict(start=0, end=2, final=-1)]:
        with pytest.raises(ValueError, match="warm-up"):
            linear_warmup(**bad)
    with pytest.raises(ValueError, match="no schedule"):
        KLAnnealing(0.5).step()
    with pytest.raises(ValueError, match="beta"):
        KLAnnealing(-1.0)


def test_plain_svi_loop_weights_exactly_the_kl_by_the_scheduled_beta():
    anneal = KLAnnealing.linear(start=2, end=6)
    svi = SVI(anneal(model), anneal(guide), pyro.optim.Adam({"lr": 0.05}), TraceMeanField_ELBO())
    guide()  # creates the parameters
    betas = []
    for _ in range(10):
        m, s = pyro.param("loc").item(), pyro.param("scale").item()
        loss = svi.step()  # computed at the parameters before this step's update
        # float32 parameters and log-densities: 1e-5 relative
        assert loss == pytest.approx(closed_form_loss(anneal.beta, m, s), rel=1e-5)
        betas.append(anneal.beta)
        anneal.step()
    assert betas == [0, 0, 0, 0.25, 0.5, 0.75, 1, 1, 1, 1]
    # beta = 0 for the first steps: no gradient reached the guide then, so it moved only after
    assert pyro.param("loc").item() < 1.0


def test_the_trainer_anneals_with_the_same_public_handler():
    data = load("digits")
    trainer = Trainer(
        create_model("logreg", data=data),
        data,
        num_epochs=2,
        batch_size=500,
        kl_warmup_start=0.5,
        kl_warmup_end=1.5,
        progress=False,
        eval_every=0,
    )
    assert isinstance(trainer.anneal, KLAnnealing)
    per_epoch = trainer.steps_per_epoch  # 3 steps of 500 of the 1437 training digits
    seen = []
    for _ in range(2 * per_epoch):
        trainer.step()
        seen.append(trainer.anneal.beta)
    assert seen == [trainer.config.beta(k / per_epoch) for k in range(2 * per_epoch)]
    assert seen[0] == 0.0 and seen[-1] == 1.0 and 0 < seen[3] < 1
