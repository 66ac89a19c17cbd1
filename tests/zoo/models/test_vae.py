"""The VAE family against closed forms: a linear-Gaussian VAE, whose ELBO and marginal
likelihood are known exactly, checks the Monte-Carlo ELBO, the IWAE bound (Burda et al. 2016)
and the unbiasedness of the four encoder-gradient estimators."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

import zoo.models.vae as vae
from zoo import TrainConfig, create_model, fit, from_tensors, get_spec, load
from zoo.cli import main
from zoo.models.vae import (
    binarize_dynamic,
    binarize_fixed,
    elbo_per_example,
    encoder_gradients,
    iwae_log_likelihood,
    log_weights,
)

pytestmark = pytest.mark.usefixtures("one_thread")

D, L, NOISE = 4, 2, 0.5


def _linear_gaussian(seed=0, exact=True, n=32):
    """x = W z + b + NOISE * eps with orthogonal columns of W, and an affine Gaussian encoder.

    With W^T W diagonal the exact posterior N(m(x), Sigma) has a diagonal Sigma, so the guide
    can hold it exactly (``exact=True``); otherwise its mean and scales are perturbed.
    Returns the model, the data and the closed forms of the posterior.
    """
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, L, generator=gen, dtype=torch.float64))
    W = q * torch.tensor([2.0, 1.0], dtype=torch.float64)
    b = torch.randn(D, generator=gen, dtype=torch.float64)
    z = torch.randn(n, L, generator=gen, dtype=torch.float64)
    x = z @ W.T + b + NOISE * torch.randn(n, D, generator=gen, dtype=torch.float64)
    zm = create_model(
        "vae-digits",
        data=from_tensors(x.float()),
        hidden=(),
        likelihood="gaussian",
        latent_dim=L,
        min_scale=1e-3,
    )
    s2 = NOISE**2
    sigma = torch.linalg.inv(torch.eye(L, dtype=torch.float64) + W.T @ W / s2)  # diagonal
    A = sigma @ W.T / s2  # m(x) = A (x - b)
    post_sd = sigma.diagonal().sqrt()
    if not exact:
        A = A * 0.8
        post_sd = post_sd * 1.5
    with torch.no_grad():
        zm.model.decoder[0].weight.copy_(W)
        zm.model.decoder[0].bias.copy_(b)
        zm.model.scale = torch.full((D,), NOISE)
        enc = zm.guide.net[0]
        enc.weight.zero_()
        enc.weight[:L] = A
        enc.bias[:L] = -(A @ b)
        # softplus(raw) + floor = post_sd
        floor = zm.guide.min_scale
        enc.bias[L:] = torch.log(torch.expm1(post_sd - floor))
    return zm, x.float(), W, b, A, post_sd


def _log_marginal(x, W, b):
    cov = W @ W.T + NOISE**2 * torch.eye(D, dtype=torch.float64)
    return torch.distributions.MultivariateNormal(b, cov).log_prob(x.double())


def _closed_form_elbo(x, W, b, A, post_sd):
    """E_q log N(x; W z + b, s^2 I) - KL(q || N(0, I)) for q = N(A (x - b), diag post_sd^2)."""
    x = x.double()
    m = (x - b) @ A.T
    resid = x - m @ W.T - b
    s2 = NOISE**2
    expected_loglik = (
        -0.5 * D * math.log(2 * math.pi * s2)
        - 0.5 * resid.square().sum(-1) / s2
        - 0.5 * (W.square() @ post_sd.square()).sum() / s2
    )
    var = post_sd.square()
    kl = 0.5 * (var.sum() + m.square().sum(-1) - L - var.log().sum())
    return expected_loglik - kl


def test_exact_posterior_makes_every_importance_weight_the_marginal_likelihood(monkeypatch):
    zm, x, W, b, _, _ = _linear_gaussian(exact=True)
    exact = _log_marginal(x, W, b)
    model, guide = zm.callables()
    log_w = log_weights(model, guide, x, 50)
    # float32 arithmetic on values of about -6 nats
    assert (log_w.double() - exact).abs().max() < 1e-4
    # Chunks of one sample and batches of 5 examples give the same bound (logsumexp bookkeeping)
    monkeypatch.setattr(vae, "MAX_CHUNK_ELEMENTS", 1)
    for k in (1, 7, 200):
        iwae = iwae_log_likelihood(model, guide, x, num_samples=k, batch_size=5)
        assert iwae.shape == (x.shape[0],)
        assert (iwae.double() - exact).abs().max() < 1e-4, k


def test_monte_carlo_elbo_matches_the_closed_form():
    zm, x, W, b, A, post_sd = _linear_gaussian(exact=False)
    closed = _closed_form_elbo(x, W, b, A, post_sd)
    model, guide = zm.callables()
    S = 4000
    log_w = log_weights(model, guide, x[:8], S).double()
    estimate = log_w.mean(0)
    se = log_w.std(0) / math.sqrt(S)
    # each example within 4 Monte-Carlo standard errors (seeded, so deterministic)
    assert ((estimate - closed[:8]).abs() < 4 * se).all(), (estimate - closed[:8]) / se
    # the guide is not the posterior: the ELBO sits strictly below log p(x)
    assert (closed < _log_marginal(x, W, b)).all()
    # and the public function averages the same log-weights
    elbo = elbo_per_example(model, guide, x[:8], num_samples=S).double()
    assert ((elbo - closed[:8]).abs() < 4 * se).all()


def test_iwae_tightens_towards_the_exact_marginal_likelihood():
    n = 256
    zm, x, W, b, A, post_sd = _linear_gaussian(exact=False, n=n)
    exact = _log_marginal(x, W, b)
    elbo_gap = (exact - _closed_form_elbo(x, W, b, A, post_sd)).mean().item()  # 0.80 nats
    model, guide = zm.callables()
    gap, se = {}, {}
    for k in (1, 3, 10, 30, 5000):
        d = exact - iwae_log_likelihood(model, guide, x, num_samples=k).double()
        # the examples are independent, so the mean's standard error comes from their spread
        gap[k], se[k] = d.mean().item(), d.std().item() / math.sqrt(n)
    # k = 1 is the ELBO (measured SE 0.14 nats)
    assert abs(gap[1] - elbo_gap) < 4 * se[1]
    # Burda et al. (2016), Theorem 1: the bound rises with k (measured gaps 0.86, 0.26, 0.050,
    # 0.015 nats), and from k = 1 to 10 by more than 4 standard errors of the difference
    assert gap[1] > gap[3] > gap[10] > gap[30] > 0, gap
    assert gap[1] - gap[10] > 4 * math.hypot(se[1], se[10])
    # at k = 5000 it reaches log p(x) within 4 SE (0.0008 nats) plus float32 rounding (1e-3)
    assert abs(gap[5000]) < 4 * se[5000] + 1e-3, (gap, se)


@pytest.mark.parametrize("estimator", ["score", "score-avg", "score-nn"])
def test_score_function_and_reparameterized_gradients_agree_in_expectation(estimator):
    zm, x, *_ = _linear_gaussian(exact=False)
    sf = create_model(
        "vae-digits",
        data=from_tensors(x),
        hidden=(),
        likelihood="gaussian",
        latent_dim=L,
        min_scale=1e-3,
        estimator=estimator,
    )
    state = {**zm.state_dict()}
    missing = sf.guide.load_state_dict(state["guide"], strict=False)
    assert not missing.unexpected_keys  # the encoders are the same; only b(x) is extra
    sf.model.load_state_dict(state["model"])
    batch = x[:8]
    K = 1000
    rep = encoder_gradients(zm, batch, K).double()
    score = encoder_gradients(sf, batch, K).double()
    se = torch.sqrt(rep.var(0) / K + score.var(0) / K)
    z = (score.mean(0) - rep.mean(0)) / se
    # 20 coordinates, each within 4 standard errors of the difference of the means
    assert z.abs().max() < 4, z
    # the test has power: the standard errors are small against the gradient itself
    assert se.norm() < 0.3 * rep.mean(0).norm()
    # the reparameterized estimator has the lower variance, summed over the coordinates;
    # measured ratios 8.9 without a baseline, about 1.5 with either baseline
    ratio = (score.var(0).sum() / rep.var(0).sum()).item()
    assert ratio > (5 if estimator == "score" else 1.2), ratio


def test_dynamic_binarization_is_fresh_and_fixed_binarization_is_seeded():
    x = torch.rand(200, 1, 8, 8)
    a, b = binarize_dynamic(x), binarize_dynamic(x)
    assert not torch.equal(a, b)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    # unbiased: the mean of 200 * 64 Bernoulli draws is within 4 SE (sd <= 0.5) of x's mean
    assert abs(a.mean() - x.mean()) < 4 * 0.5 / math.sqrt(x.numel())
    f0, f0_again, f1 = binarize_fixed(x, 0), binarize_fixed(x, 0), binarize_fixed(x, 1)
    assert torch.equal(f0, f0_again) and not torch.equal(f0, f1)
    assert set(f0.unique().tolist()) <= {0.0, 1.0}
    # the global RNG plays no part in the fixed binarization
    torch.manual_seed(123)
    assert torch.equal(binarize_fixed(x, 0), f0)


def test_bad_input_gives_clear_errors():
    with pytest.raises(ValueError, match="pixel intensities in \\[0, 1\\]"):
        binarize_fixed(torch.full((2, 3), 1.5))
    with pytest.raises(ValueError, match="estimator must be one of"):
        create_model("vae-digits", estimator="reinforce")
    with pytest.raises(ValueError, match="likelihood must be one of"):
        create_model("vae-digits", likelihood="poisson")
    with pytest.raises(ValueError, match="activation must be one of"):
        create_model("vae-digits", activation="swish")
    with pytest.raises(ValueError, match="baseline_beta must lie in"):
        vae.VAEConfig(estimator="score-avg", baseline_beta=1.0)  # refused by the config itself
    with pytest.raises(ValueError, match="encoder_min_scale must be positive"):
        create_model("vae-digits", encoder_min_scale=0.0)
    data = from_tensors(torch.rand(20, 1, 8, 8) * 2)  # intensities up to 2
    zm = create_model("vae-digits", data=data)
    with pytest.raises(ValueError, match="needs pixel intensities in \\[0, 1\\]"):
        fit(zm, data, num_epochs=1, progress=False)
    gaussian = create_model("vae-digits", data=data, likelihood="gaussian")
    fit(gaussian, data, num_epochs=1, progress=False)  # any real data is fine for a Gaussian
    avg = create_model("vae-digits", estimator="score-avg")
    with pytest.raises(ValueError, match="only TraceGraph_ELBO uses baselines"):
        fit(avg, load("digits"), num_epochs=1, elbo="trace", progress=False)
    nn_baseline = create_model("vae-digits", estimator="score-nn")
    with pytest.raises(ValueError, match="cannot vectorize particles"):
        fit(nn_baseline, load("digits"), num_epochs=1, num_particles=2, vectorize_particles=True)
    with pytest.raises(ValueError, match="a conv VAE needs \\(C, H, W\\) images"):
        create_model("vae-conv-fashion", data=from_tensors(torch.rand(4, 10)))


@pytest.mark.parametrize("estimator", ["reparam", "score-avg"])
def test_particles_sequential_and_vectorized_train(estimator):
    data = load("digits")
    for vectorize in (False, True):
        zm = create_model("vae-digits", data=data, estimator=estimator, seed=0)
        cfg = TrainConfig(
            num_epochs=1,
            batch_size=200,
            num_particles=3,
            vectorize_particles=vectorize,
            progress=False,
            eval_every=0,
        )
        result = fit(zm, data, config=cfg)
        assert all(math.isfinite(v) for v in result.losses)


def test_short_training_on_digits_improves_the_test_elbo_and_writes_the_pngs(tmp_path):
    data = load("digits")
    zm = create_model("vae-digits", data=data, seed=0, eval_k=16)
    history = fit(zm, data, num_epochs=6, progress=False).history
    first, last = history.iloc[0], history.iloc[-1]
    # measured: -35.1 nats after one epoch, about -26 after six
    assert last["test_elbo"] > first["test_elbo"] + 3
    # the importance-weighted bound is the tighter one
    assert (history["test_iwae"] >= history["test_elbo"]).all()
    assert last["test_recon"] == pytest.approx(last["test_elbo"] + last["test_kl"])
    paths = zm.spec.hooks.plot(zm, data, tmp_path)
    names = sorted(p.name for p in paths)
    assert names == [
        "vae-digits_latent.png",
        "vae-digits_reconstructions.png",
        "vae-digits_samples.png",
    ]
    for p in paths:
        assert p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG"


def test_conv_decoder_restores_the_image_shape_and_leading_dimensions():
    for shape in ((1, 28, 28), (1, 8, 8), (3, 7, 9)):
        zm = create_model("vae-conv-fashion", data=from_tensors(torch.rand(4, *shape)))
        z = torch.randn(5, 4, zm.config.latent_dim)
        assert zm.model.decoder(z).shape == (5, 4, math.prod(shape))
        loc, scale = zm.guide.encode(torch.rand(4, *shape))
        assert loc.shape == scale.shape == (4, zm.config.latent_dim) and (scale > 0).all()


def test_gaussian_and_continuous_bernoulli_likelihoods_score_what_torch_scores():
    x = torch.rand(6, 1, 8, 8)
    for likelihood, expected in (
        ("continuous-bernoulli", lambda out: torch.distributions.ContinuousBernoulli(logits=out)),
        ("gaussian", lambda out: torch.distributions.Normal(out, 0.5)),
    ):
        zm = create_model("vae-digits", data=from_tensors(x), likelihood=likelihood)
        z = torch.randn(6, zm.config.latent_dim)
        out = zm.model.decoder(z)
        got = zm.model.observation(z).log_prob(x.reshape(6, -1))
        assert torch.allclose(got, expected(out).log_prob(x.reshape(6, -1)).sum(-1), atol=1e-4)
    bern = create_model("vae-digits", data=from_tensors(x))
    z = torch.randn(6, bern.config.latent_dim)
    xb = binarize_fixed(x)
    logits = bern.model.decoder(z)
    bce = -F.binary_cross_entropy_with_logits(logits, xb.reshape(6, -1), reduction="none").sum(-1)
    assert torch.allclose(bern.model.observation(z).log_prob(xb.reshape(6, -1)), bce, atol=1e-4)


def test_score_function_estimators_default_to_the_smaller_learning_rate(tmp_path):
    spec = get_spec("vae-digits")
    assert spec.training_defaults()["lr"] == 1e-3  # the entry's default estimator is reparam
    for estimator in ("score", "score-avg", "score-nn"):
        config = vae.VAEConfig(latent_dim=10, hidden=(200,), estimator=estimator)
        assert spec.training_defaults(config)["lr"] == vae.SCORE_FUNCTION_LR
    # fit reads the defaults of the model it trains
    data = load("digits")
    zm = create_model("vae-digits", data=data, estimator="score-avg", seed=0)
    history = fit(zm, data, num_epochs=1, progress=False, eval_every=0).history
    assert history["lr"].iloc[0] == vae.SCORE_FUNCTION_LR
    # zoo train: the estimator's default, and a flag given still wins
    for flags, lr in (([], vae.SCORE_FUNCTION_LR), (["--lr", "5e-4"], 5e-4)):
        out = tmp_path / f"run{len(flags)}"
        argv = ["train", "vae-digits", "--estimator", "score", "--num-epochs", "1"]
        argv += ["--batch-size", "500", "--no-progress", "--no-plots", "--out", str(out)]
        assert main([*argv, *flags]) == 0
        assert json.loads((out / "config.json").read_text())["train"]["lr"] == lr


def test_the_encoder_scale_never_falls_below_its_floor():
    zm = create_model("vae-digits", encoder_min_scale=0.05, seed=0)
    with torch.no_grad():
        zm.guide.net[-1].bias[zm.config.latent_dim :] = -50.0  # softplus(-50) ~ 2e-22
        _, scale = zm.guide.encode(torch.rand(8, 64))
    assert scale.min().item() == pytest.approx(0.05, rel=1e-6)
