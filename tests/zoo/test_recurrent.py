"""Sparse VD for recurrent layers (zoo.recurrent; Lobacheva, Chirkova & Vetrov 2017).

A user's nn.LSTM (nn.GRU, nn.RNN) made Bayesian through zoo.from_module: its weight_ih/weight_hh
tensors are sample sites drawn once per minibatch (the LRT does not apply across time steps),
used by torch's fused kernel at every step.  Checked against plain torch layers loaded with the
same weights: the mean net, one draw per minibatch at every time step, the draws' moments, the
pruned export, and the ELBO's N/B scale with the sparse-VD KL.
"""

import copy
import math

import pyro
import pytest
import torch
from pyro import poutine
from torch import nn

import zoo
from guides.dropout import LOG_SIGMA2_MIN
from zoo.data import from_tensors
from zoo.elbo import MeanFieldELBO
from zoo.models.bnn import export_pruned, layer_report
from zoo.models.weights import mean_net_outputs
from zoo.priors import BayesianGRU, BayesianLSTM, LogUniform, sparse_vd_kl, weight_sites
from zoo.train import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

T, FEATURES, HIDDEN, CLASSES = 5, 3, 4, 3
CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class _Seq(nn.Module):
    """(N, T, 3) sequences -> 3 classes: a recurrent layer, then a Linear on the last output."""

    def __init__(self, cell="lstm", batch_first=True, num_layers=2, bidirectional=False):
        super().__init__()
        self.rnn = CELLS[cell](
            FEATURES, HIDDEN, num_layers, batch_first=batch_first, bidirectional=bidirectional
        )
        self.head = nn.Linear(HIDDEN * (2 if bidirectional else 1), CLASSES)

    def forward(self, x):
        seq = x if self.rnn.batch_first else x.transpose(0, 1)
        out, _ = self.rnn(seq)
        last = out[:, -1] if self.rnn.batch_first else out[-1]
        return self.head(last)


def _data(n=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, T, FEATURES, generator=gen)
    return from_tensors(x, torch.arange(n) % CLASSES, x_test=x[:4], y_test=torch.arange(4) % 3)


def _model(net, **kw):
    return zoo.from_module(net, data=_data(), prior="loguniform", guide="sparse-vd", seed=0, **kw)


def _plain_with(zm, weights):
    """The plain architecture with the model's biases and ``weights`` (site name -> tensor)."""
    net = zm.model.plain_net()
    state = {k: v.detach() for k, v in zm.model.net.state_dict().items()}
    state.update({k.removeprefix("net."): v.detach() for k, v in weights.items()})
    net.load_state_dict(state)
    return net


def _set_guide(zm, log_alpha, seed=0):
    """Random theta ~ N(0, 0.5^2) and the given log alpha (a number or site -> tensor)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for site in zm.guide.sites:
            site.theta.copy_(0.5 * torch.randn(site.theta.shape, generator=gen))
            la = log_alpha[site.site] if isinstance(log_alpha, dict) else log_alpha
            site.log_sigma2.copy_(la + (site.theta.square() + 1e-8).log())


def _training_draw(zm, x):
    """One pass as training runs it (the entry's LRT handler around guide and model): the
    guide's trace, the model's output, and the recurrent layer's full output sequence."""
    model, guide = zm.callables()
    seen = []
    hook = zm.model.net.rnn.register_forward_hook(lambda m, i, out: seen.append(out[0]))
    try:
        guide_trace = poutine.trace(guide).get_trace(x)
        out = poutine.replay(model, trace=guide_trace)(x)
    finally:
        hook.remove()
    return guide_trace, out, seen[0]


def test_the_lstm_is_bayesian_through_from_module_and_only_its_biases_stay_parameters():
    """Its weight_ih/weight_hh of both layers are sites (kind 'lstm', one draw per minibatch),
    no warning is raised (filterwarnings=error), the biases stay parameters; a deepcopy and a
    float64 copy stay Bayesian LSTMs."""
    zm = _model(_Seq())
    lstm = zm.model.net.rnn
    assert type(lstm) is BayesianLSTM
    sites = weight_sites(zm.model)
    assert [(s.name, tuple(s.shape), s.kind, s.shared_draw) for s in sites] == [
        ("net.rnn.weight_ih_l0", (16, 3), "lstm", True),
        ("net.rnn.weight_hh_l0", (16, 4), "lstm", True),
        ("net.rnn.weight_ih_l1", (16, 4), "lstm", True),
        ("net.rnn.weight_hh_l1", (16, 4), "lstm", True),
        ("net.head.weight", (3, 4), "linear", False),
    ]
    assert sorted(n for n, _ in lstm.named_parameters()) == sorted(
        f"bias_{k}_l{i}" for i in (0, 1) for k in ("hh", "ih")
    )
    assert zm.config.layers == ("rnn", "head")
    twin = copy.deepcopy(lstm).double()
    assert type(twin) is BayesianLSTM and twin.bias_ih_l0.dtype == torch.float64


@pytest.mark.parametrize("batch_first", [True, False])
def test_with_tiny_alpha_the_output_is_the_plain_lstm_with_the_mean_weights(batch_first):
    """sigma^2 at its floor e^-30 (alpha ~ e^-28): the training pass equals nn.LSTM loaded
    with theta (two layers; only the LSTM Bayesian, so the head adds no LRT noise): 1e-6."""
    zm = _model(_Seq(batch_first=batch_first), layers=["rnn"])
    _set_guide(zm, 0.0)
    with torch.no_grad():
        for site in zm.guide.sites:
            site.log_sigma2.fill_(LOG_SIGMA2_MIN)
    x = _data().x_train[:6]
    _, out, _ = _training_draw(zm, x)
    plain = _plain_with(zm, zm.guide.mean_weights(threshold=None))
    assert type(plain.rnn) is nn.LSTM
    torch.testing.assert_close(out, plain(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("cell", "batch_first", "num_layers", "bidirectional"),
    [
        ("lstm", True, 2, False),
        ("lstm", False, 2, False),
        ("lstm", True, 1, True),
        ("gru", False, 2, True),
        ("rnn", True, 2, False),
    ],
)
def test_one_weight_draw_per_minibatch_is_used_at_every_time_step(
    cell, batch_first, num_layers, bidirectional
):
    """alpha = 1 (noise as large as the weights): the weights the guide drew under the LRT
    handler are real draws (not skipped as the Linear head's are), and the layer's output at
    every time step equals the plain torch layer loaded with that one draw (1e-5); the next
    minibatch gets a fresh draw."""
    net = _Seq(cell, batch_first, num_layers, bidirectional)
    zm = _model(net)
    _set_guide(zm, 0.0)
    x = _data().x_train[:6]
    trace, _, seq = _training_draw(zm, x)
    rnn_sites = [s.name for s in weight_sites(zm.model) if s.shared_draw]
    assert len(rnn_sites) == 2 * num_layers * (2 if bidirectional else 1)
    draw = {n: trace.nodes[n]["value"] for n in rnn_sites}
    for name, w in draw.items():
        assert not trace.nodes[name]["infer"].get("weight_not_drawn")
        assert (w != zm.guide.posterior(name).mean).float().mean() > 0.99
    assert trace.nodes["net.head.weight"]["infer"]["weight_not_drawn"]
    plain = _plain_with(zm, {**zm.guide.mean_weights(threshold=None), **draw})
    expected, _ = plain.rnn(x if batch_first else x.transpose(0, 1))
    assert seq.shape == expected.shape and seq.shape[1 if batch_first else 0] == T
    torch.testing.assert_close(seq, expected, rtol=0, atol=1e-5)
    trace2, _, seq2 = _training_draw(zm, x)
    assert not torch.equal(trace2.nodes[rnn_sites[0]]["value"], draw[rnn_sites[0]])
    assert (seq2 - seq).abs().max() > 1e-2


def test_draws_have_mean_theta_and_variance_alpha_theta_squared():
    """2000 training-pass draws of weight_hh_l0 (64 weights, log alpha uniform in [-2, 1]):
    per weight, the mean is theta and the variance alpha theta^2, each within 5 standard errors
    (sigma / sqrt(S) for the mean, sigma^2 sqrt(2 / (S - 1)) for the variance)."""
    zm = _model(_Seq(num_layers=1))
    gen = torch.Generator().manual_seed(3)
    la = {s.site: torch.rand(s.theta.shape, generator=gen) * 3 - 2 for s in zm.guide.sites}
    _set_guide(zm, la)
    name, s = "net.rnn.weight_hh_l0", 2000
    _, guide = zm.callables()
    with torch.no_grad():
        draws = torch.stack(
            [poutine.trace(guide).get_trace().nodes[name]["value"] for _ in range(s)]
        )
    draws = draws.double()
    site = next(q for q in zm.guide.sites if q.site == name)
    theta = site.theta.detach().double()
    var = torch.exp(la[name].double()) * theta.square()  # alpha theta^2
    assert torch.allclose(var, site.log_sigma2.detach().double().exp(), rtol=1e-4)
    mean_err = (draws.mean(0) - theta).abs() / (var.sqrt() / math.sqrt(s))
    var_err = (draws.var(0) - var).abs() / (var * math.sqrt(2 / (s - 1)))
    assert mean_err.max() < 5 and var_err.max() < 5


def test_pruned_lstm_exports_to_a_plain_lstm_equal_to_the_masked_mean_net():
    """log alpha = +5 on about half the LSTM weights: they are zeroed in the export (a plain
    nn.LSTM), whose outputs equal the model's with the pruned means (1e-6); the report counts
    them per weight matrix."""
    zm = _model(_Seq())
    gen = torch.Generator().manual_seed(1)
    prune = {s.site: torch.rand(s.theta.shape, generator=gen) < 0.5 for s in zm.guide.sites}
    _set_guide(zm, {k: torch.where(v, 5.0, -5.0) for k, v in prune.items()})
    net = export_pruned(zm)
    assert type(net.rnn) is nn.LSTM and not any(isinstance(m, BayesianLSTM) for m in net.modules())
    for site in zm.guide.sites:
        w = net.get_parameter(site.site.removeprefix("net."))
        expected = torch.where(prune[site.site], 0.0, site.theta.detach())
        assert torch.equal(w, expected)
    x = _data(n=32, seed=2).x_train
    with torch.no_grad():
        torch.testing.assert_close(net(x), mean_net_outputs(zm, x), rtol=0, atol=1e-6)
    report = layer_report(zm).set_index("layer")
    for name, mask in prune.items():
        assert report.loc[name, "kept"] == int((~mask).sum())
    assert report.loc["net.rnn.weight_hh_l1", "kind"] == "lstm"


def test_elbo_is_n_over_b_log_likelihood_of_the_draw_minus_the_sparse_vd_kl():
    """loss = -(N/B) sum_batch log p(y | x, W) + sum KL, W the guide's one draw of the LSTM
    weights (the head left deterministic), KL Molchanov et al.'s approximation of the clamped
    log alpha; under the entry's LRT handler, as training runs it (float32 sums: 1e-4)."""
    n, b = 16, 4
    data = _data(n)
    zm = _model(_Seq(), layers=["rnn"])
    gen = torch.Generator().manual_seed(5)
    la = {s.site: torch.rand(s.theta.shape, generator=gen) * 4 - 3 for s in zm.guide.sites}
    _set_guide(zm, la)
    model, guide = zm.callables()
    kl = sum(sparse_vd_kl(v.clamp(-8, 8)).sum() for v in zm.guide.log_alpha().values()).item()

    def loglik(xs, ys, seed):
        pyro.set_rng_seed(seed)  # the ELBO runs the guide first: the same draw
        trace = poutine.trace(guide).get_trace(xs, ys, num_data=n)
        draw = {s.site: trace.nodes[s.site]["value"] for s in zm.guide.sites}
        logits = _plain_with(zm, draw)(xs)
        return logits.log_softmax(-1).gather(-1, ys[:, None]).sum().item()

    x, y = data.x_train, data.y_train
    elbo = MeanFieldELBO()
    for xs, ys, seed in ((x[:b], y[:b], 1), (x, y, 2)):
        pyro.set_rng_seed(seed)
        loss = elbo.loss(model, guide, xs, ys, num_data=n)
        assert loss == pytest.approx(-(n / len(xs)) * loglik(xs, ys, seed) + kl, rel=1e-4)


@pytest.mark.parametrize("guide", ["sparse-vd", "vd-layer", "vd-unit", "meanfield", "mc-dropout"])
def test_every_guide_trains_an_lstm_and_a_gru(guide):
    """One trainer step moves every guide parameter of a net with an LSTM and a GRU (the
    Normal prior for meanfield and MC dropout)."""

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(FEATURES, HIDDEN, batch_first=True)
            self.gru = nn.GRU(HIDDEN, HIDDEN, batch_first=True)
            self.head = nn.Linear(HIDDEN, CLASSES)

        def forward(self, x):
            return self.head(self.gru(self.lstm(x)[0])[0][:, -1])

    prior = "normal" if guide in ("meanfield", "mc-dropout") else "loguniform"
    data = _data()
    zm = zoo.from_module(Two(), data=data, prior=prior, guide=guide, seed=0)
    assert type(zm.model.net.gru) is BayesianGRU
    trainer = Trainer(zm, data, batch_size=4, lr=1e-2, device="cpu", progress=False)
    before = {n: p.detach().clone() for n, p in zm.guide.named_parameters()}
    assert math.isfinite(trainer.step())
    for name, p in zm.guide.named_parameters():
        assert torch.isfinite(p).all() and not torch.equal(p, before[name]), name


def test_log_uniform_prior_cannot_be_sampled_outside_a_guide():
    """Reading a weight outside a guide samples the improper prior: a clear error, not NaNs."""
    lstm = LogUniform().apply_(nn.LSTM(FEATURES, HIDDEN))
    with pytest.raises(NotImplementedError, match="improper"):
        lstm(torch.zeros(T, 2, FEATURES))


def test_a_checkpoint_rebuilds_the_sparse_lstm(tmp_path):
    """fit with an output folder, then from_checkpoint with the net again: the same guide, so
    the same pruned export (exactly)."""
    from zoo.jobs import from_checkpoint

    data = _data()
    zm = _model(_Seq())
    zoo.fit(zm, data, num_epochs=1, batch_size=8, progress=False, out_dir=str(tmp_path))
    rebuilt, _ = from_checkpoint(str(tmp_path), net=_Seq())
    assert rebuilt.guide.site_names == zm.guide.site_names
    x = data.x_train
    with torch.no_grad():
        assert torch.equal(export_pruned(rebuilt)(x), export_pruned(zm)(x))


# torch's own notice that its CPU oneDNN path has no projections (it falls back to its kernel)
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_projections_and_both_directions_take_the_given_weights():
    """A 2-layer bidirectional LSTM with proj_size: 12 weight sites (ih, hh, hr per layer and
    direction); conditioned on random weights its output is nn.LSTM's with them (same kernel,
    same float32 operations: exact)."""
    torch.manual_seed(0)
    plain = nn.LSTM(FEATURES, 6, num_layers=2, proj_size=2, bidirectional=True)
    bayes = LogUniform().apply_(copy.deepcopy(plain))
    names = [s.name for s in weight_sites(bayes)]
    assert len(names) == 12 and names[:3] == ["weight_ih_l0", "weight_hh_l0", "weight_hr_l0"]
    weights = {n: torch.randn(plain.get_parameter(n).shape) for n in names}
    with torch.no_grad():
        for n, w in weights.items():
            plain.get_parameter(n).copy_(w)
    x = torch.randn(T, 4, FEATURES)
    with torch.no_grad():
        out, (h, c) = poutine.condition(bayes, data=weights)(x)
        ref, (h_ref, c_ref) = plain(x)
    assert torch.equal(out, ref) and torch.equal(h, h_ref) and torch.equal(c, c_ref)
