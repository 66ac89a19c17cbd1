"""zoo.evaluate: predictive uncertainty, NLL/Brier, detection AUCs and adversarial attacks,
checked against hand-computed values, sklearn and closed forms."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from torch import nn

import zoo
from zoo.evaluate import (
    brier_score,
    classification_metrics,
    detection_auc,
    expected_entropy,
    fgsm,
    mean_net,
    mutual_information,
    negative_log_likelihood,
    pgd,
    predictive_draws,
    predictive_entropy,
    resize_images,
    shifted_inputs,
    uncertainty_scores,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _h(*p):
    return -sum(q * math.log(q) for q in p if q > 0)


def test_entropy_and_mutual_information_by_hand():
    """Three examples, two draws each (float64, tolerance 1e-12):

    1. draws [1, 0] and [0, 1]: predictive [1/2, 1/2], H = log 2, E H = 0, MI = log 2;
    2. both draws [1/2, 1/2]: H = E H = log 2, MI = 0 (pure aleatoric);
    3. [.7, .2, .1] and [.1, .2, .7] (3 classes, padded with a zero class in 1-2 above so that
       C is shared): predictive [.4, .2, .4], H = H(.4, .2, .4), E H = H(.7, .2, .1)."""
    draws = torch.tensor(
        [
            [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.7, 0.2, 0.1]],
            [[0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.1, 0.2, 0.7]],
        ],
        dtype=torch.float64,
    )
    total = [math.log(2), math.log(2), _h(0.4, 0.2, 0.4)]
    aleatoric = [0.0, math.log(2), _h(0.7, 0.2, 0.1)]
    mi = [t - a for t, a in zip(total, aleatoric, strict=True)]
    torch.testing.assert_close(
        predictive_entropy(draws), torch.tensor(total, dtype=torch.float64), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(
        expected_entropy(draws), torch.tensor(aleatoric, dtype=torch.float64), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(
        mutual_information(draws), torch.tensor(mi, dtype=torch.float64), atol=1e-12, rtol=0
    )
    scores = uncertainty_scores(draws)
    torch.testing.assert_close(
        scores["max_prob"], torch.tensor([0.5, 0.5, 0.6], dtype=torch.float64)
    )
    assert mi[2] == pytest.approx(0.2531, abs=1e-4)  # H(.4,.2,.4)=1.0549, H(.7,.2,.1)=0.8018


def test_mutual_information_is_zero_when_all_draws_agree_and_bounded_by_log_s():
    """Identical draws: MI = 0 to float32 round-off (1e-6); disagreeing one-hot draws give
    MI = H of the vote shares, at most log S (tolerance 1e-5)."""
    gen = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(50, 10, generator=gen) * 3, -1)
    same = p.expand(8, 50, 10)
    assert mutual_information(same).abs().max() < 1e-6
    torch.testing.assert_close(predictive_entropy(same), expected_entropy(same), atol=1e-5, rtol=0)
    # S = 4 one-hot draws voting classes (0, 1, 2, 3): MI = log 4 = log S
    votes = F.one_hot(torch.tensor([0, 1, 2, 3]), 10).double()[:, None, :]
    assert mutual_information(votes).item() == pytest.approx(math.log(4), abs=1e-12)


def test_nll_and_brier_agree_with_sklearn():
    """On random predictive tables, the NLL equals sklearn's log_loss and the Brier score its
    multi-class brier_score_loss (sum over classes), to 1e-10 in float64; (S, N, C) draws are
    averaged before the log."""
    gen = torch.Generator().manual_seed(1)
    draws = torch.softmax(torch.randn(5, 200, 4, generator=gen, dtype=torch.float64), -1)
    y = torch.randint(4, (200,), generator=gen)
    p = draws.mean(0)
    assert negative_log_likelihood(draws, y) == pytest.approx(
        log_loss(y.numpy(), p.numpy(), labels=range(4)), abs=1e-10
    )
    assert brier_score(draws, y) == pytest.approx(
        brier_score_loss(y.numpy(), p.numpy(), labels=range(4), scale_by_half=False), abs=1e-10
    )
    m = classification_metrics(draws, y)
    assert m["acc"] == pytest.approx((p.argmax(1) == y).double().mean().item())
    assert set(m) >= {"acc", "nll", "brier", "ece", "entropy", "mutual_info", "aleatoric"}
    # a perfect one-hot predictor: NLL 0, Brier 0
    assert brier_score(F.one_hot(y, 4).double(), y) == 0.0
    assert negative_log_likelihood(F.one_hot(y, 4).double(), y) == 0.0


def test_detection_auc_by_hand_and_against_sklearn():
    """in = (.1, .4, .35), out = (.8, .3): 4 of the 6 (out, in) pairs are ordered, AUROC = 2/3;
    ranked .8+ .4- .35- .3+ .1-: AP = 1/2 * 1 + 1/2 * 2/4 = 3/4 (exact)."""
    a, b = np.array([0.1, 0.4, 0.35]), np.array([0.8, 0.3])
    got = detection_auc(torch.tensor(a), b)
    assert got["auroc"] == pytest.approx(2 / 3, abs=1e-12)
    assert got["aupr"] == pytest.approx(0.75, abs=1e-12)
    labels = np.r_[np.zeros(3), np.ones(2)]
    assert got["auroc"] == roc_auc_score(labels, np.r_[a, b])
    gen = np.random.default_rng(0)
    a, b = gen.normal(size=300), gen.normal(0.5, size=200)
    got = detection_auc(a, b)
    assert got["auroc"] == roc_auc_score(np.r_[np.zeros(300), np.ones(200)], np.r_[a, b])
    assert got["aupr"] == average_precision_score(np.r_[np.zeros(300), np.ones(200)], np.r_[a, b])
    with pytest.raises(ValueError, match="at least one"):
        detection_auc([], [1.0])


def _linear_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    return net.eval()


def test_fgsm_increases_the_loss_of_a_fixed_net_by_at_least_its_first_order_term():
    """For a linear softmax classifier the cross-entropy is convex in x, so
    CE(x + eps sign g) >= CE(x) + eps ||g||_1 for every example (unclipped bounds); tolerance
    1e-5 for float32.  The parameters' gradients are untouched."""
    net = _linear_net()
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(64, 1, 4, 4, generator=gen)
    y = torch.randint(3, (64,), generator=gen)
    eps = 0.05
    x_adv = fgsm(net, x, y, eps, bounds=(-10.0, 10.0))
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert all(p.grad is None for p in net.parameters())
    xg = x.clone().requires_grad_(True)
    F.cross_entropy(net(xg), y, reduction="sum").backward()
    g = xg.grad.flatten(1)
    with torch.no_grad():
        before = F.cross_entropy(net(x), y, reduction="none")
        after = F.cross_entropy(net(x_adv), y, reduction="none")
    assert (after >= before + eps * g.abs().sum(1) - 1e-5).all()
    assert (after > before).all()


def test_pgd_stays_in_the_ball_and_beats_the_clean_loss():
    """PGD from a random start: every pixel within eps of x and within [0, 1]; on an MLP the
    mean loss exceeds the clean one and FGSM's at the same eps (10 steps)."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3)).eval()
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(128, 1, 4, 4, generator=gen)
    y = torch.randint(3, (128,), generator=gen)
    eps = 0.1
    x_pgd = pgd(net, x, y, eps, steps=10, generator=gen)
    assert (x_pgd - x).abs().max() <= eps + 1e-6
    assert x_pgd.min() >= 0 and x_pgd.max() <= 1
    with torch.no_grad():
        clean = F.cross_entropy(net(x), y).item()
        attacked = F.cross_entropy(net(x_pgd), y).item()
        fast = F.cross_entropy(net(fgsm(net, x, y, eps)), y).item()
    assert attacked > clean and attacked >= fast - 1e-4
    with pytest.raises(ValueError, match="eps"):
        fgsm(net, x, y, -1.0)
    with pytest.raises(ValueError, match="steps"):
        pgd(net, x, y, 0.1, steps=0)


def test_shifts_and_resize():
    """rot90 four times is the identity; inversion maps [0, 1] onto itself; noise is uniform
    (mean 1/2 within 0.01 over 20 000 pixels); a constant image stays constant when resized."""
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(5, 1, 28, 28, generator=gen)
    r = x
    for _ in range(4):
        r = shifted_inputs(r, "rotate90")
    assert torch.equal(r, x)
    assert not torch.equal(shifted_inputs(x, "rotate90"), x)
    torch.testing.assert_close(shifted_inputs(x, "invert"), 1 - x)
    noise = shifted_inputs(torch.zeros(25, 1, 28, 28), "noise", gen)
    assert abs(noise.mean().item() - 0.5) < 0.01
    big = resize_images(torch.full((2, 1, 8, 8), 0.3), (28, 28))
    assert big.shape == (2, 1, 28, 28)
    torch.testing.assert_close(big, torch.full_like(big, 0.3))
    with pytest.raises(ValueError, match="kind"):
        shifted_inputs(x, "blur")


def _logreg(guide, **overrides):
    data = zoo.load("digits")
    zm = zoo.create_model("logreg", data=data, guide=guide, seed=0, **overrides)
    return zm, data


def test_predictive_draws_of_mean_field_logreg_match_the_lrt_closed_form():
    """Under the local reparameterization a logistic regression's logits are
    N(x mu + b, x^2 sigma^2) per example and class: the average of S = 4000 draws of softmax
    must match an independent Monte Carlo of that closed form (40 000 draws) within 0.03
    (each average's standard error is below 0.5/sqrt(4000) = 0.008)."""
    zm, data = _logreg("meanfield", init_scale=0.3)
    x = data.x_test[:6]
    draws = predictive_draws(zm, x, num_samples=4000)
    assert draws.shape == (4000, 6, 10)
    q = zm.guide.posterior("net.1.weight").base_dist
    b = zm.model.net[1].bias.detach()
    flat = x.flatten(1)
    mean = flat @ q.loc.detach().T + b
    std = (flat.square() @ q.scale.detach().square().T).sqrt()
    gen = torch.Generator().manual_seed(5)
    logits = mean + std * torch.randn(40_000, *mean.shape, generator=gen)
    torch.testing.assert_close(draws.mean(0), logits.softmax(-1).mean(0), atol=0.03, rtol=0)
    assert mutual_information(draws).min() > 0


def test_mc_dropout_without_dropout_has_no_epistemic_uncertainty():
    """MC dropout with rates 0: every draw is the mean net, so the draws equal softmax of
    mean_net's logits (1e-6) and the MI is 0 (1e-6)."""
    zm, data = _logreg("mc-dropout", dropout=0.0, input_dropout=0.0)
    x = data.x_test[:50]
    draws = predictive_draws(zm, x, num_samples=5, batch_size=16)
    with torch.no_grad():
        expected = mean_net(zm)(x).softmax(-1)
    torch.testing.assert_close(draws, expected.expand(5, -1, -1), atol=1e-6, rtol=0)
    assert mutual_information(draws).max() < 1e-6


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="sum to 1"):
        predictive_entropy(torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match=r"\(S, N, C\)"):
        mutual_information(torch.ones(4))
    with pytest.raises(ValueError, match="labels"):
        brier_score(torch.full((2, 2), 0.5), torch.tensor([0, 2]))
    zm = zoo.create_model("mlp-regressor-normal", seed=0)
    with pytest.raises(ValueError, match="not a classifier"):
        predictive_draws(zm, torch.zeros(3, *zm.info.input_shape))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_draws_scores_and_attacks_stay_on_the_device():
    """On CUDA the draws, the scores and the adversarial inputs are computed where the model is."""
    zm, data = _logreg("mc-dropout")
    zm.to("cuda")
    x, y = data.x_test[:64].cuda(), data.y_test[:64].cuda()
    draws = predictive_draws(zm, x.cpu(), num_samples=3)
    assert draws.is_cuda
    assert all(s.is_cuda for s in uncertainty_scores(draws).values())
    net = mean_net(zm)
    assert fgsm(net, x, y, 0.1).is_cuda and pgd(net, x, y, 0.1, steps=2).is_cuda
    assert 0 <= classification_metrics(draws, y)["acc"] <= 1
