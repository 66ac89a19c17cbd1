"""Every convolution, the layers= selector, and the layers that stay deterministic.

zoo.priors makes Linear, Conv1d, Conv2d and Conv3d weights Bayesian (any groups, stride,
padding, dilation, padding mode), and the weights of RNN, LSTM and GRU layers (tested in
tests/zoo/test_recurrent.py); every guide of guides.dropout trains such a net under the LRT,
with a weight per example, and with one shared draw.  Any other module with parameters stays a
point estimate: apply_ names it in one warning and layer_report lists it, outside the Bayesian
total that compression counts.  (The LRT's moments for Conv1d and Conv3d are checked in
tests/zoo/handlers/test_lrt.py.)
"""

import copy
import math

import pytest
import torch
from pyro import poutine
from torch import nn
from torch.distributions import kl_divergence

import zoo  # noqa: F401  (module-local Pyro params, as everywhere in the package)
from guides.dropout import DropoutWeight
from zoo import get_spec
from zoo.data import DataInfo, from_tensors
from zoo.models.bnn import (
    BAYESIAN_TOTAL,
    BNN,
    DETERMINISTIC_TOTAL,
    BNNConfig,
    layer_report,
)
from zoo.priors import LogUniform, Normal, deterministic_layers, select_layers, weight_sites
from zoo.spec import ZooModel
from zoo.train import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def _conv1d_net():
    """(2, 9) -> 3: a grouped, strided, dilated Conv1d, then a depthwise circular one."""
    return nn.Sequential(
        nn.Conv1d(2, 4, 3, stride=2, padding=2, dilation=2, groups=2),  # 4 x 5
        nn.ReLU(),
        nn.Conv1d(4, 4, 3, padding=1, groups=4, padding_mode="circular"),  # 4 x 5
        nn.Flatten(),
        nn.Linear(4 * 5, 3),
    )


def _conv3d_net():
    """(2, 3, 5, 5) -> 3: a grouped Conv3d with per-axis stride and dilation."""
    return nn.Sequential(
        nn.Conv3d(2, 4, 2, stride=(1, 2, 2), padding=1, dilation=(1, 2, 2), groups=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 3 * 3, 3),  # 4 channels x 4 x 3 x 3
    )


NETS = {"conv1d": (_conv1d_net, (2, 9)), "conv3d": (_conv3d_net, (2, 3, 5, 5))}
GUIDES = ["sparse-vd", "vd-layer", "vd-unit", "meanfield", "mc-dropout"]


@pytest.mark.parametrize("net", list(NETS))
def test_conv_nets_become_bayesian_with_the_same_forward(net):
    """Every conv (and the Linear) becomes a site; with the same weights the output is the
    plain net's (identical float32 operations, circular padding included: 1e-6)."""
    factory, shape = NETS[net]
    torch.manual_seed(0)
    plain = factory()
    bayes = LogUniform().apply_(copy.deepcopy(plain))  # no warning: nothing left deterministic
    sites = weight_sites(bayes)
    kinds = [s.kind for s in sites]
    assert kinds == (["conv1d", "conv1d", "linear"] if net == "conv1d" else ["conv3d", "linear"])
    assert deterministic_layers(bayes) == []
    gen = torch.Generator().manual_seed(1)
    weights = {s.name: torch.randn(s.shape, generator=gen) for s in sites}
    with torch.no_grad():
        for name, w in weights.items():
            plain.get_parameter(name).copy_(w)
    x = torch.randn(5, *shape, generator=gen)
    out = poutine.condition(bayes, data=weights)(x)
    torch.testing.assert_close(out, plain(x), rtol=1e-6, atol=1e-6)


def _zoo_model(factory, shape, guide, reparam):
    """The registry's BNN recipe (prior, guide, handler) around a user's network."""
    prior = "normal" if guide in ("meanfield", "mc-dropout") else "loguniform"
    spec = get_spec(f"lenet300-{prior}")
    config = BNNConfig(prior=prior, reparam=reparam)
    info = DataInfo(tuple(shape), "classification", num_classes=3)
    model = BNN(factory, config.make_prior(), info)
    q = spec.guides[guide](config, info, model)
    return ZooModel(spec, config, info, guide, model, q, spec.hooks.handler(config))


def _data(shape, n=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x, x_test = torch.randn(n, *shape, generator=gen), torch.randn(4, *shape, generator=gen)
    return from_tensors(x, torch.arange(n) % 3, x_test=x_test, y_test=torch.arange(4) % 3)


@pytest.mark.parametrize("reparam", ["lrt", "per_example", "shared"])
@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("guide", GUIDES)
def test_every_guide_trains_conv1d_and_conv3d_nets(guide, net, reparam):
    """One trainer step moves every guide parameter; log alpha, dropout rates and the KL have
    the weights' shapes (vd-unit: one alpha per input channel, groups included)."""
    factory, shape = NETS[net]
    zm = _zoo_model(factory, shape, guide, reparam)
    trainer = Trainer(zm, _data(shape), batch_size=4, lr=1e-2, device="cpu", progress=False)
    before = {n: p.detach().clone() for n, p in zm.guide.named_parameters()}
    assert math.isfinite(trainer.step())
    for name, p in zm.guide.named_parameters():
        assert torch.isfinite(p).all() and not torch.equal(p, before[name]), name

    sites = weight_sites(zm.model)
    x = torch.zeros(2, *shape)
    draws = poutine.trace(zm.guide).get_trace(x)  # the log-uniform prior cannot be sampled
    prior_trace = poutine.trace(poutine.replay(zm.model, trace=draws)).get_trace(x)
    log_alpha, rates = zm.guide.log_alpha(), zm.guide.dropout_rates()
    for i, s in enumerate(sites):
        q, p = zm.guide.posterior(s.name), prior_trace.nodes[s.name]["fn"]
        assert kl_divergence(q, p).shape == ()  # summed over the weight, as the ELBO takes it
        assert kl_divergence(q.base_dist, p.base_dist).shape == s.shape
        if guide == "meanfield":
            continue  # no dropout rate
        assert rates[s.name].shape == s.shape
        if guide == "mc-dropout":
            assert (rates[s.name] == (0.2 if i == 0 else 0.5)).all()
        else:
            assert log_alpha[s.name].shape == s.shape
    if guide == "vd-unit":
        for site, s in zip(zm.guide.sites, sites, strict=True):
            in_units = s.shape[1] * getattr(s.module, "groups", 1)
            assert site.log_alpha.shape == (1, in_units, *([1] * (len(s.shape) - 2)))
    report = layer_report(zm)
    assert list(report["kind"][:-1]) == [s.kind for s in sites]


def test_grouped_dropout_masks_each_input_channel_independently():
    """DropoutWeight(groups=2) on a Conv1d(4, 4, 3, groups=2) weight: one mask per group and
    input unit, shared by the group's outputs and taps; the two groups' masks independent."""
    p, n = 0.3, 20_000
    loc = torch.rand(4, 2, 3, dtype=torch.float64) + 0.5
    ratio = DropoutWeight(loc, p, groups=2).rsample((n,)) / loc
    # float64 rounding of loc z / (1 - p) / loc: 1e-12
    for rows in ((0, 1), (2, 3)):
        group = ratio[:, rows[0] : rows[1] + 1]
        assert (group - group[:, :1, :, :1]).abs().max().item() < 1e-12
    kept = ratio[:, ::2, :, 0] > 0.5  # (n, group, unit)
    assert ((ratio[:, :, :, 0] - 1 / (1 - p)).abs() < 1e-12).sum() == 2 * kept.sum()
    # groups disagree on a unit with probability 2 p (1 - p) = 0.42; 5 binomial std errors
    differ = (kept[:, 0] != kept[:, 1]).double().mean().item()
    assert abs(differ - 2 * p * (1 - p)) <= 5 * math.sqrt(0.42 * 0.58 / (2 * n))
    with pytest.raises(ValueError, match="groups must be a positive divisor of the 4 output"):
        DropoutWeight(loc, p, groups=3)


def test_vd_unit_alpha_of_a_grouped_conv_is_per_input_channel():
    """vd-unit on Conv1d(4, 6, 3, groups=2): output o of group g reads the alpha of input
    channel g * 2 + j at weight column j (exactly: a copy of the parameter's values)."""

    def net():
        return nn.Sequential(nn.Conv1d(4, 6, 3, groups=2), nn.Flatten(), nn.Linear(18, 3))

    zm = _zoo_model(net, (4, 5), "vd-unit", "lrt")
    site = zm.guide.sites[0]
    with torch.no_grad():
        site.log_alpha.copy_(-torch.arange(1.0, 5.0).reshape(1, 4, 1))
    la = zm.guide.log_alpha()["net.0.weight"]
    expected = torch.tensor([[-1.0, -2.0]] * 3 + [[-3.0, -4.0]] * 3)[:, :, None].expand(6, 2, 3)
    assert torch.equal(la, expected)


class _Recurrent(nn.Module):
    """A Conv1d, a BatchNorm1d, an LSTM and a Linear head: (2, 6) sequences -> 3 classes."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3, padding=1)  # weight 4 x 2 x 3 = 24
        self.bn = nn.BatchNorm1d(4)  # 4 + 4 = 8 parameters
        self.lstm = nn.LSTM(4, 5, batch_first=True)  # weights 20 x 4 + 20 x 5, biases 2 x 20
        self.head = nn.Linear(5, 3)  # weight 15

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        out, _ = self.lstm(h.transpose(1, 2))
        return self.head(out[:, -1])


def test_batchnorm_is_named_and_the_report_counts_only_bayesian_weights():
    """The LSTM's two weights are Bayesian; the warning names the BatchNorm alone, the report
    lists it with its parameter count, and its Bayesian total (the one evaluate's sparsity and
    compression read) counts 24 + 80 + 100 + 15 (the LSTM's 40 bias terms, point estimates as
    every bias, are not counted)."""
    with pytest.warns(UserWarning) as record:
        zm = _zoo_model(_Recurrent, (2, 6), "sparse-vd", "lrt")
    assert len(record) == 1  # one warning for all of them
    message = str(record[0].message)
    assert "1 parametrized layer(s) of _Recurrent deterministic: bn (BatchNorm1d)." in (message)
    assert "point estimates" in message and "compression does not count them" in message
    assert [(n, type(m).__name__) for n, m in deterministic_layers(zm.model.net)] == [
        ("bn", "PyroBatchNorm1d"),
    ]
    # prune the first 10 conv, 20 + 30 LSTM and 5 head weights: log alpha = +5 against -5
    with torch.no_grad():
        for site, pruned in zip(zm.guide.sites, (10, 20, 30, 5), strict=True):
            la = torch.full((site.theta.numel(),), -5.0)
            la[:pruned] = 5.0
            la = la.reshape(site.theta.shape)
            site.log_sigma2.copy_(la + (site.theta.square() + 1e-8).log())
    report = layer_report(zm)
    assert list(report["layer"]) == [
        "net.conv.weight",
        "net.lstm.weight_ih_l0",
        "net.lstm.weight_hh_l0",
        "net.head.weight",
        "net.bn",
        DETERMINISTIC_TOTAL,
        BAYESIAN_TOTAL,
    ]
    assert list(report["kind"]) == ["conv1d", "lstm", "lstm", "linear", *["deterministic"] * 2, ""]
    assert list(report["type"]) == ["Conv1d", "LSTM", "LSTM", "Linear", "BatchNorm1d", "", ""]
    assert list(report["weights"]) == [24, 80, 100, 15, 8, 8, 219]
    assert list(report["kept"]) == [14, 60, 70, 10, 8, 8, 154]
    assert report["sparsity_%"][4:6].isna().all() and report["compression"][4:6].isna().all()
    total = report.iloc[-1]
    # exact ratios of the hand counts (float64: 1e-12)
    assert total["sparsity_%"] == pytest.approx(100 * 65 / 219, abs=1e-12)
    assert total["compression"] == pytest.approx(219 / 154, rel=1e-12)
    metrics = zm.evaluate(_data((2, 6)), "test")
    assert metrics["sparsity"] == pytest.approx(65 / 219, abs=1e-12)
    assert metrics["compression"] == pytest.approx(219 / 154, rel=1e-12)


class _Features(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.Conv1d(4, 4, 3))
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.features(x).mean(-1))


def _site_names(layers):
    return [s.name for s in weight_sites(Normal().apply_(_Features(), layers=layers))]


def test_layers_selector_by_type_by_name_and_by_callable():
    """Types, names and glob patterns (a module's name selects the layers inside it), callables;
    layers left out are listed as deterministic without a warning (the caller chose them)."""
    assert _site_names(nn.Conv1d) == ["features.0.weight", "features.2.weight"]
    assert _site_names((nn.Linear,)) == ["head.weight"]
    assert _site_names(["features.2", "he*"]) == ["features.2.weight", "head.weight"]
    assert _site_names("features") == ["features.0.weight", "features.2.weight"]
    assert _site_names("features.*") == ["features.0.weight", "features.2.weight"]
    assert _site_names(lambda name, m: m.out_channels == 4 if name != "head" else False) == [
        "features.0.weight",
        "features.2.weight",
    ]
    net = Normal().apply_(_Features(), layers=["head"])
    assert [n for n, _ in deterministic_layers(net)] == ["features.0", "features.2"]
    assert [n for n, _ in select_layers(_Features())] == ["features.0", "features.2", "head"]


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ("haed", r"pattern 'haed' matches no Linear, Conv1d/2d/3d, RNN, LSTM or GRU layer of"),
        (["head", "feature.*"], r"pattern 'feature\.\*' matches no"),
        (lambda name, m: False, r"_Features has no selected Linear, Conv1d/2d/3d, RNN, LSTM"),
        ([], r"_Features has no selected"),
        (nn.LayerNorm, r"cannot make Bayesian: LayerNorm; it supports Linear, Conv1d, Conv2d, "),
        (3, r"layers= must be None, a layer type"),
    ],
)
def test_layers_selector_that_matches_nothing_names_the_layers(layers, message):
    """A selector that picks nothing (or is not a selector) is a ValueError naming the layers."""
    with pytest.raises(ValueError, match=message) as info:
        Normal().apply_(_Features(), layers=layers)
    if not isinstance(layers, type | int):
        assert "features.0 (Conv1d), features.2 (Conv1d), head (Linear)" in str(info.value)


@pytest.mark.parametrize("net", list(NETS))
def test_first_layer_mask_plot_of_conv1d_and_conv3d_nets(net, tmp_path):
    """layer1_mask.png draws a Conv1d kernel as a row and a Conv3d one averaged over depth."""
    from zoo.models.plots.bnn import plot

    factory, shape = NETS[net]
    zm = _zoo_model(factory, shape, "sparse-vd", "lrt")
    [path] = plot(zm, _data(shape), tmp_path)
    assert path.name == "layer1_mask.png" and path.stat().st_size > 1000
