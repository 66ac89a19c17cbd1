"""Shrinking pruned nets (zoo.models.shrink) and the SBP entries' export (zoo.models.structured).

Every equality is to atol 1e-5 (float32 sums of a few hundred products in another order)."""

import pytest
import torch
from torch import nn

import zoo
from zoo.data import DataInfo, from_tensors
from zoo.models.bnn import BNNConfig, build_net
from zoo.models.shrink import mask_units, shrink
from zoo.models.structured import export_shrunk, masked_net, unit_masks, unit_report
from zoo.models.weights import mean_net_outputs
from zoo.structured import SBP

FASHION = DataInfo(
    input_shape=(1, 28, 28), task="classification", num_classes=10, image_shape=(28, 28)
)


def _random_masks(net, names, keep=0.4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    layers = dict(net.named_modules())
    return {n: torch.rand(layers[n].weight.shape[0], generator=gen) < keep for n in names}


def _widths(net):
    return [m.weight.shape[:2] for m in net if isinstance(m, nn.Linear | nn.Conv2d)]


@pytest.mark.parametrize("hidden", [(300, 100), (50,), (40, 30, 20)])
def test_shrunk_mlp_equals_the_masked_net(hidden):
    torch.manual_seed(0)
    net = build_net(BNNConfig(hidden=hidden), FASHION)
    names = [str(1 + 2 * i) for i in range(len(hidden))]  # Flatten, (Linear, ReLU)*, Linear
    masks = _random_masks(net, names)
    small = shrink(net, masks)
    x = torch.randn(64, 1, 28, 28)
    torch.testing.assert_close(small(x), mask_units(net, masks)(x), atol=1e-5, rtol=0)
    kept = [int(m.sum()) for m in masks.values()]
    assert [w[0] for w in _widths(small)] == [*kept, 10]
    assert [w[1] for w in _widths(small)] == [784, *kept]


def test_shrunk_lenet5_removes_channels_and_their_flattened_features():
    """Channel c of conv2's 50 x 4 x 4 map is fc1's inputs 16c ... 16c + 15."""
    torch.manual_seed(0)
    net = build_net(BNNConfig(arch="lenet5"), FASHION)
    masks = _random_masks(net, ["0", "3", "7"])
    small = shrink(net, masks)
    x = torch.randn(32, 1, 28, 28)
    torch.testing.assert_close(small(x), mask_units(net, masks)(x), atol=1e-5, rtol=0)
    c1, c2, f1 = (int(masks[n].sum()) for n in ("0", "3", "7"))
    assert _widths(small) == [(c1, 1), (c2, c1), (f1, 16 * c2), (10, f1)]


@pytest.mark.parametrize("arch", ["mlp", "lenet5"])
def test_input_masks_select_the_features_a_linear_layer_reads(arch):
    """An input mask on the first Linear layer (pixels of the MLP, flattened conv features of
    LeNet-5, on top of conv2's channel mask) becomes a KeepFeatures index before it."""
    torch.manual_seed(0)
    net = build_net(BNNConfig(arch=arch), FASHION)
    first = "1" if arch == "mlp" else "7"
    outs = ["1", "3"] if arch == "mlp" else ["0", "3", "7"]
    masks = _random_masks(net, outs)
    inputs = {first: torch.rand(dict(net.named_modules())[first].in_features) < 0.5}
    small = shrink(net, masks, inputs)
    x = torch.randn(16, 1, 28, 28)
    torch.testing.assert_close(small(x), mask_units(net, masks, inputs)(x), atol=1e-5, rtol=0)
    linear = next(m for m in small if isinstance(m, nn.Linear))
    if arch == "mlp":
        assert linear.in_features == int(inputs[first].sum())
    else:  # the features of conv2's kept channels that the input mask keeps too
        channels = masks["3"].repeat_interleave(16)
        assert linear.in_features == int((channels & inputs[first]).sum())


def test_a_pruned_output_layer_is_zeroed_not_removed():
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    masks = {"0": torch.tensor([True, False, True, True, False]), "2": torch.tensor([1, 0, 1]) > 0}
    small = shrink(net, masks)
    x = torch.randn(8, 6)
    torch.testing.assert_close(small(x), mask_units(net, masks)(x), atol=1e-6, rtol=0)
    assert small(x).shape == (8, 3) and (small(x)[:, 1] == 0).all()


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return x + self.fc(x)


@pytest.mark.parametrize(
    ("net", "names", "match"),
    [
        (
            nn.Sequential(nn.Linear(4, 4), _Residual(), nn.Linear(4, 2)),
            ["0"],
            "'1' \\(_Residual\\)",
        ),
        (nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)), ["0"], "BatchNorm1d"),
        (nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2)), ["0"], "'1' \\(Sigmoid\\)"),
        (_Residual(), [], "_Residual with its own forward"),
        (nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)), ["9"], "no Linear/ConvNd layer '9'"),
    ],
)
def test_shrink_refuses_what_it_cannot_shrink_naming_the_layer(net, names, match):
    masks = {n: torch.tensor([True, False, True, False]) for n in names}
    with pytest.raises(ValueError, match=match):
        shrink(net, masks)


def test_modules_before_the_first_pruned_layer_are_kept_as_they_are():
    net = nn.Sequential(nn.BatchNorm1d(6), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)).eval()
    masks = {"1": torch.tensor([True, False, True, True, False])}
    x = torch.randn(8, 6)
    torch.testing.assert_close(shrink(net, masks)(x), mask_units(net, masks)(x), atol=1e-6, rtol=0)


def _train_a_little(zm, x, y, **kw):
    zoo.fit(zm, x, y, num_epochs=2, batch_size=50, lr=1e-2, progress=False, **kw)
    # force a mix of kept and pruned units in every layer (training this short prunes few)
    for site in zm.guide.sites:
        gen = torch.Generator().manual_seed(len(site.loc))
        drop = torch.rand(len(site.loc), generator=gen) < 0.5
        loc, log_sigma = site.loc.detach().clone(), site.log_sigma.detach().clone()
        loc[drop], log_sigma[drop] = -15.0, 2.0  # broad: SNR < 1
        site.set_(loc, log_sigma)


def test_trained_sbp_mlp_export_equals_the_mean_net():
    """lenet300-sbp after training: the shrunk plain net's outputs are the Pyro mean net's."""
    torch.manual_seed(0)
    x, y = torch.rand(200, 1, 28, 28), torch.randint(0, 10, (200,))
    zm = zoo.create_model("lenet300-sbp", data=from_tensors(x, y), seed=0)
    _train_a_little(zm, x, y)
    expected = mean_net_outputs(zm, x)
    small = export_shrunk(zm)
    torch.testing.assert_close(small(x), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(masked_net(zm)(x), expected, atol=1e-5, rtol=0)
    kept = [int(m.sum()) for m in unit_masks(zm).values()]
    pixels = int(unit_masks(zm, where="in")["1"].sum())
    assert 0 < kept[0] < 300 and 0 < kept[1] < 100 and 0 < pixels < 784
    report = unit_report(zm)
    dense = 784 * 300 + 300 * 100 + 100 * 10
    shrunk = pixels * kept[0] + kept[0] * kept[1] + kept[1] * 10
    assert report.iloc[-1]["compression"] == pytest.approx(dense / shrunk)
    assert zm.evaluate(x, y)["compression"] == pytest.approx(dense / shrunk)


def test_trained_sbp_lenet5_export_equals_the_mean_net():
    torch.manual_seed(0)
    x, y = torch.rand(100, 1, 28, 28), torch.randint(0, 10, (100,))
    zm = zoo.create_model("lenet5-sbp", data=from_tensors(x, y), seed=0)
    _train_a_little(zm, x, y)
    small = export_shrunk(zm)
    torch.testing.assert_close(small(x), mean_net_outputs(zm, x), atol=1e-5, rtol=0)
    assert len(unit_masks(zm)) == 3  # conv1, conv2, fc1; not the output layer
    assert list(unit_masks(zm, where="in")) == ["7"]  # fc1's 800 flattened features


def test_from_module_takes_the_sbp_prior_and_guide():
    """A user's net: SBP() as prior object, the 'sbp' guide by default, SNR < 1 as the rule."""
    torch.manual_seed(0)
    x, y = torch.rand(200, 64), torch.randint(0, 10, (200,))
    net = nn.Sequential(nn.Linear(64, 40), nn.Tanh(), nn.Linear(40, 10))
    zm = zoo.from_module(net, data=from_tensors(x, y), prior=SBP(), seed=0)
    assert zm.guide_name == "sbp" and zm.config.threshold == 0.0
    _train_a_little(zm, x, y)
    torch.testing.assert_close(export_shrunk(zm)(x), mean_net_outputs(zm, x), atol=1e-5, rtol=0)
    assert zm.spec.hooks.report(zm).iloc[0]["units_kept"].endswith("/40")
