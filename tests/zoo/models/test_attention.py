"""Attention as a latent variable against brute force: the enumerated marginal likelihood is the
sum over the K tiles, the REINFORCE and amortized score-function gradients average to the exact
(enumerated) gradient, and the amortized ELBO is the log marginal likelihood minus the KL to the
exact posterior.  Also the cluttered-tiles generator: deterministic, one object per grid."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO, TraceGraph_ELBO, config_enumerate

import zoo.data as zdata
from guides.attention import NoGuide, PosteriorAttention, PriorAttention, split_tiles
from zoo import DataInfo, TrainConfig, create_model, fit, load
from zoo.cli import main as cli_main
from zoo.models import attention
from zoo.models.attention import AttentionConfig, attention_parameters, elbo_for

pytestmark = pytest.mark.usefixtures("one_thread")

GRID, TILE, CLASSES, B = 3, 2, 3, 6
INFO = DataInfo((1, GRID * TILE, GRID * TILE), "classification", CLASSES, (6, 6))


def _tiny(mode, estimator="score", seed=0):
    """A float64 attention model on 3x3 grids of 2x2 tiles, 3 classes, and a batch of 6."""
    zm = create_model(
        f"attention-{mode}",
        data=INFO,
        seed=seed,
        hidden=(5,),
        feature_dim=4,
        attention_hidden=3,
        guide_hidden=(5,),
        baseline_hidden=(4,),
        estimator=estimator,
    )
    zm.model.double()
    zm.guide.double()
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(B, *INFO.input_shape, generator=gen, dtype=torch.float64)
    y = torch.randint(CLASSES, (B,), generator=gen)
    return zm, x, y


def _brute_force_log_joint(model, x, y):
    """``log p(s = k | x_i) + log p(y_i | x_i, s = k)`` ``(B, K)``: the model run once per tile
    with ``s`` conditioned, no enumeration involved."""
    cols = []
    for k in range(GRID**2):
        s = torch.full((x.shape[0],), k)
        tr = poutine.trace(poutine.condition(model, data={"s": s})).get_trace(x, y)
        cols.append(tr.nodes["s"]["fn"].log_prob(s) + tr.nodes["y"]["fn"].log_prob(y))
    return torch.stack(cols, -1)


# ---------------------------------------------------------------------------------------------
# the data


def test_tiles_are_deterministic_per_seed_and_hold_one_object_each():
    kwargs = {"num_train": 300, "num_test": 100, "clutter": 4}
    a = load("cluttered-tiles", seed=3, **kwargs)
    b = load("cluttered-tiles", seed=3, **kwargs)
    c = load("cluttered-tiles", seed=4, **kwargs)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert torch.equal(a.extras["location_test"], b.extras["location_test"])
    assert not torch.equal(a.x_train, c.x_train)
    assert a.info.input_shape == (1, 24, 24)

    digits = load("digits")
    for split, source_x, source_y in (
        ("train", digits.x_train, digits.y_train),
        ("test", digits.x_test, digits.y_test),
    ):
        x, y = getattr(a, f"x_{split}"), getattr(a, f"y_{split}")
        loc, obj = a.extras[f"location_{split}"], a.extras[f"object_index_{split}"]
        tiles = split_tiles(x, 3)  # (N, 9, 64)
        objects = source_x[obj].reshape(-1, 1, 64)
        # the object's tile is the whole source image, and no other tile is
        same = (tiles == objects).all(-1)
        assert (same.sum(-1) == 1).all()
        assert torch.equal(same.float().argmax(-1), loc)
        assert torch.equal(y, source_y[obj])
        # every other tile holds clutter, never an empty tile at this clutter level
        clutter = tiles[~same]
        assert (clutter.amax(-1) > 0).all()
    # every tile position is used, roughly uniformly (300 draws over 9 tiles: ~33 each)
    counts = torch.bincount(a.extras["location_train"], minlength=9)
    assert counts.min() > 10


def test_tiles_options_are_checked_and_change_the_grid():
    ds = load("cluttered-tiles", grid=2, clutter=0, num_train=20, num_test=5)
    assert ds.info.input_shape == (1, 16, 16)
    tiles = split_tiles(ds.x_train, 2)
    # without clutter every tile but the object's is empty
    assert ((tiles.amax(-1) > 0).sum(-1) == 1).all()
    info = zdata.dataset_info("cluttered-tiles", source="fashion-mnist")
    assert info.input_shape == (1, 84, 84)
    with pytest.raises(ValueError, match="source must be one of"):
        zdata.dataset_info("cluttered-tiles", source="cifar")
    with pytest.raises(ValueError, match="fragment"):
        zdata.dataset_info("cluttered-tiles", fragment=1.5)
    with pytest.raises(ValueError, match="grid"):
        zdata.dataset_info("cluttered-tiles", grid=1)


# ---------------------------------------------------------------------------------------------
# enumeration is the exact marginal likelihood


@pytest.mark.parametrize("num_data", [None, 4 * B])
def test_enumerated_marginal_likelihood_is_the_brute_force_sum_over_tiles(num_data):
    zm, x, y = _tiny("enum")
    log_joint = _brute_force_log_joint(zm.model, x, y)
    exact = log_joint.logsumexp(-1)  # log p(y_i | x_i)
    scale = 1.0 if num_data is None else num_data / B
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(zm.model, NoGuide(), x, y, num_data=num_data)
    # the loss is -(N/B) sum_i log sum_s p(s|x_i) p(y_i|x_i,s), to float64 rounding
    assert loss == pytest.approx(-scale * exact.sum().item(), rel=1e-12, abs=1e-12)
    log_py, att = zm.model.predict(x)
    torch.testing.assert_close(log_py.gather(-1, y[:, None]).squeeze(-1), exact)
    prior = torch.stack(
        [
            poutine.trace(zm.model).get_trace(x, y).nodes["s"]["fn"].log_prob(torch.full((B,), k))
            for k in range(GRID**2)
        ],
        -1,
    )
    torch.testing.assert_close(att, prior.exp())


# ---------------------------------------------------------------------------------------------
# the score-function gradients are unbiased


def _grads(params):
    return torch.cat([p.grad.reshape(-1) for p in params])


def _exact_gradient(zm, x, y):
    """The gradient of the guide's objective, summed exactly over ``s`` by enumerating the
    guide's site with ``TraceEnum_ELBO``; ``s`` is never sampled."""
    for p in zm.parameters():
        p.grad = None
    guide = config_enumerate(zm.guide, default="parallel")
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss_and_grads(zm.model, guide, x, y)
    return loss


@pytest.mark.parametrize(
    "mode, estimator",
    [("reinforce", "score"), ("reinforce", "score-avg"), ("reinforce", "score-nn"),
     ("amortized", "score"), ("amortized", "score-nn")],
)  # fmt: skip
def test_score_function_gradient_is_unbiased_against_the_enumerated_gradient(mode, estimator):
    zm, x, y = _tiny(mode, estimator)
    params = [p for p in zm.parameters() if not any(p is q for q in _baseline_params(zm))]
    exact_loss = _exact_gradient(zm, x, y)
    exact = -_grads(params)

    if mode == "reinforce":
        # the objective in closed form: sum_s p(s|x) log p(y|x_s), so the enumeration is checked
        # against autograd too
        for p in params:
            p.grad = None
        log_joint = _brute_force_log_joint(zm.model, x, y)
        log_prior = zm.model.attention_logits(x).log_softmax(-1)
        objective = (log_prior.exp() * (log_joint - log_prior)).sum()
        objective.backward()
        torch.testing.assert_close(_grads(params), exact, rtol=1e-9, atol=1e-12)
        assert -exact_loss == pytest.approx(objective.item(), rel=1e-12)

    # draws of the estimator: in vectorized groups where the estimator allows it
    vectorize = estimator != "score-nn"
    per_call, calls = (250, 40) if vectorize else (1, 600)
    elbo = TraceGraph_ELBO(
        num_particles=per_call, vectorize_particles=vectorize, max_plate_nesting=1
    )
    pyro.set_rng_seed(0)
    draws = []
    for _ in range(calls):
        for p in zm.parameters():
            p.grad = None
        elbo.loss_and_grads(zm.model, zm.guide, x, y)
        draws.append(-_grads(params))
    draws = torch.stack(draws)
    mean = draws.mean(0)
    # each row averages `per_call` particles; the rows are independent given the baseline state,
    # whose dependence on earlier rows does not bias a score-function estimate
    se = draws.std(0) / math.sqrt(calls)
    informative = se > 1e-12  # a coordinate without noise must match exactly
    z = (mean - exact)[informative] / se[informative]
    # Tolerance: |z| < 5 for every coordinate (about 60 of them; a false alarm has probability
    # ~3e-5), and the mean squared z-score, 1 in expectation, below 2.
    assert z.abs().max() < 5, z
    assert z.square().mean() < 2, z.square().mean()
    torch.testing.assert_close(mean[~informative], exact[~informative], rtol=1e-8, atol=1e-10)
    # and the estimate is informative: its noise is small against the gradient itself
    assert (mean - exact).norm() < 0.2 * exact.norm()


def _baseline_params(zm):
    baseline = getattr(zm.guide, "baseline", None)
    return [] if baseline is None else list(baseline.parameters())


def test_a_baseline_reduces_the_variance_of_the_attention_gradient():
    """At fixed parameters the decaying-average baseline, once it has settled, must cut the
    variance of the REINFORCE gradient of the attention network (measured: ~1000-fold at this
    initialization, where log p(y | x_s) barely depends on s)."""
    variances = {}
    for estimator in ("score", "score-avg"):
        zm, x, y = _tiny("reinforce", estimator)
        elbo = TraceGraph_ELBO(max_plate_nesting=1)
        params = attention_parameters(zm)
        draws = []
        for i in range(300):
            for p in zm.parameters():
                p.grad = None
            elbo.loss_and_grads(zm.model, zm.guide, x, y)
            if i >= 50:  # the moving average starts at zero and settles first
                draws.append(_grads(params).clone())
        variances[estimator] = torch.stack(draws).var(0).sum().item()
    assert variances["score-avg"] < 0.1 * variances["score"], variances


# ---------------------------------------------------------------------------------------------
# the amortized posterior's ELBO


def test_amortized_elbo_is_the_log_marginal_likelihood_minus_the_kl_to_the_posterior():
    zm, x, y = _tiny("amortized")
    log_joint = _brute_force_log_joint(zm.model, x, y)
    log_marginal = log_joint.logsumexp(-1)
    log_post = log_joint - log_marginal[:, None]
    log_q = zm.guide.logits(x, y).log_softmax(-1)
    kl = (log_q.exp() * (log_q - log_post)).sum(-1)
    # the ELBO, summed exactly over s per example: E_q [log p(y, s | x) - log q(s | x, y)]
    elbo = (log_q.exp() * (log_joint - log_q)).sum(-1)
    assert (elbo <= log_marginal).all()
    assert (kl > 0).all()
    torch.testing.assert_close(elbo, log_marginal - kl)
    # Pyro's enumerated ELBO of the guide is the same number, summed over the batch
    exact_loss = _exact_gradient(zm, x, y)
    assert -exact_loss == pytest.approx(elbo.sum().item(), rel=1e-12)
    # the Monte-Carlo ELBO that training uses averages to it (4 standard errors)
    estimates = torch.tensor(
        [
            -TraceGraph_ELBO(num_particles=200, vectorize_particles=True, max_plate_nesting=1).loss(
                zm.model, zm.guide, x, y
            )
            for _ in range(20)
        ]
    )
    se = estimates.std() / math.sqrt(len(estimates))
    assert abs(estimates.mean() - elbo.sum()) < 4 * se
    assert estimates.mean() < log_marginal.sum()


def test_the_amortized_elbo_is_tight_when_q_is_the_exact_posterior(monkeypatch):
    zm, x, y = _tiny("amortized")
    log_joint = _brute_force_log_joint(zm.model, x, y).detach()
    monkeypatch.setattr(zm.guide, "logits", lambda x, y=None: log_joint)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(
        zm.model, config_enumerate(zm.guide, default="parallel"), x, y
    )
    assert -loss == pytest.approx(log_joint.logsumexp(-1).sum().item(), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# the family's plumbing


def test_each_mode_trains_with_its_elbo_and_refuses_the_others():
    assert elbo_for(AttentionConfig(mode="soft")) == "trace"
    assert elbo_for(AttentionConfig(mode="enum")) == "traceenum"
    assert elbo_for(AttentionConfig(mode="reinforce")) == "tracegraph"
    assert elbo_for(AttentionConfig(mode="amortized")) == "tracegraph"
    with pytest.raises(ValueError, match="trains with elbo 'tracegraph'"):
        elbo_for(AttentionConfig(mode="reinforce"), TrainConfig(elbo="trace"))
    with pytest.raises(ValueError, match="vectorize"):
        elbo_for(AttentionConfig(mode="amortized"), TrainConfig(vectorize_particles=True))
    with pytest.raises(ValueError, match="mode must be one of"):
        AttentionConfig(mode="hard")
    with pytest.raises(ValueError, match="estimator"):
        AttentionConfig(estimator="reparam")


def test_guides_are_clear_about_what_they_need():
    zm, x, _ = _tiny("amortized")
    with pytest.raises(ValueError, match="needs the labels y"):
        zm.guide(x)
    assert isinstance(_tiny("reinforce")[0].guide, PriorAttention)
    assert isinstance(zm.guide, PosteriorAttention)
    with pytest.raises(ValueError, match="equal tiles"):
        create_model("attention-enum", data=DataInfo((1, 7, 7), "classification", 3, (7, 7)))


def test_evaluate_reports_accuracy_and_attention_against_the_true_tiles(tmp_path):
    data = load("cluttered-tiles", num_train=200, num_test=100)
    zm = create_model("attention-amortized", data=data, seed=0)
    fit(zm, data, num_epochs=2, batch_size=50, progress=False, device="cpu")
    metrics = zm.evaluate(data, "test")
    log_py, att = zm.model.predict(data.x_test)
    loc = data.extras["location_test"]
    assert metrics["accuracy"] == pytest.approx(
        (log_py.argmax(-1) == data.y_test).double().mean().item()
    )
    assert metrics["attention_accuracy"] == pytest.approx(
        (att.argmax(-1) == loc).double().mean().item()
    )
    entropy = -(att * att.log()).sum(-1).mean().item()
    assert metrics["attention_entropy"] == pytest.approx(entropy, rel=1e-5)
    assert 0 <= metrics["posterior_attention_accuracy"] <= 1
    # without the ground truth the attention accuracy is simply absent
    assert "attention_accuracy" not in attention.metrics(zm, data.x_test, data.y_test)
    paths = zm.spec.hooks.plot(zm, data, tmp_path)
    assert paths[0].stat().st_size > 10_000


def test_cli_trains_an_attention_entry(tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli_main(
        ["train", "attention-enum", "--num-epochs", "1", "--hidden", "16", "--feature-dim", "8",
         "--out", str(out), "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "traceenum" in text and "attention_accuracy" in text
    assert (out / "attention-enum_attention.png").is_file()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["enum", "reinforce", "amortized"])
def test_training_on_cuda_keeps_everything_on_the_device(mode, tmp_path):
    data = load("cluttered-tiles", num_train=100, num_test=50, device="cuda")
    assert data.extras["location_test"].is_cuda
    zm = create_model(f"attention-{mode}", data=data, seed=0)
    result = fit(zm, data, device="cuda", num_epochs=1, batch_size=50, progress=False)
    assert result.device.type == "cuda"
    assert all(p.is_cuda for p in zm.parameters())
    metrics = zm.evaluate(data, "test")
    assert 0 <= metrics["attention_accuracy"] <= 1
    assert zm.spec.hooks.plot(zm, data, tmp_path)[0].is_file()
