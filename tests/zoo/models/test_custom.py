"""A user's own network (zoo.from_module): every guide and prior, a checkpoint round trip
(fit, resume bit-identically, rebuild, evaluate, export), and the refusals."""

import dataclasses

import pyro
import pytest
import torch
from torch import nn

import zoo
from zoo.data import from_tensors
from zoo.jobs import export_job, from_checkpoint
from zoo.models.weights import mean_net_outputs
from zoo.train import TrainConfig, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

NET_FILE = """
from torch import nn


def make_net(info):
    width = 1
    for n in info.input_shape:
        width *= n
    out = info.num_classes
    return nn.Sequential(nn.Flatten(), nn.Linear(width, 16), nn.Tanh(), nn.Linear(16, out))
"""


def _data(n=120, d=6, classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n + 40, d, generator=gen)
    y = (x[:, :classes] + 0.3 * torch.randn(n + 40, classes, generator=gen)).argmax(-1)
    return from_tensors(x[:n], y[:n], x_test=x[n:], y_test=y[n:])


def _config(out, **kw):
    base = dict(
        num_epochs=3,
        batch_size=32,
        lr=0.01,
        progress=False,
        out_dir=str(out),
        checkpoint_every=2,
        kl_warmup_end=1.0,
        eval_every=0,  # the crash below counts the model's calls: training steps only
    )
    return TrainConfig(**{**base, **kw})


@pytest.fixture
def net_ref(tmp_path):
    path = tmp_path / "user_nets.py"
    path.write_text(NET_FILE)
    return f"{path}:make_net"


def test_every_guide_trains_and_the_users_net_is_left_alone():
    data = _data()
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    combos = [(g, "loguniform") for g in ("sparse-vd", "vd-layer", "vd-unit", "meanfield")]
    combos += [(g, "normal") for g in ("sparse-vd", "meanfield", "mc-dropout")]
    for guide, prior in combos:
        zm = zoo.from_module(net, data=data, prior=prior, guide=guide, seed=0)
        assert zm.guide_name == guide and zm.spec.family == "custom"
        # the guide starts at the user's weights
        torch.testing.assert_close(zm.guide.posterior("net.0.weight").mean, net[0].weight)
        result = zoo.fit(zm, data, num_epochs=2, batch_size=40, progress=False)
        assert all(map(torch.isfinite, map(torch.tensor, result.losses))), (guide, prior)
        assert 0 <= zm.evaluate(data)["acc"] <= 1
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert type(net[0]) is nn.Linear  # not swapped for a Bayesian layer


def test_defaults_follow_the_prior_and_bad_combinations_are_refused_before_building():
    data = _data()
    net = nn.Linear(6, 3)
    assert zoo.from_module(net, data=data).guide_name == "sparse-vd"
    assert zoo.from_module(net, data=data, prior="normal").guide_name == "meanfield"
    with pytest.raises(ValueError, match=r"mc-dropout.*prior='normal'"):
        zoo.from_module(net, data=data, guide="mc-dropout")
    with pytest.raises(ValueError, match=r"guide.*sparse-v"):
        zoo.from_module(net, data=data, guide="sparse-v")
    with pytest.raises(ValueError, match=r"option for ModuleConfig.*treshold"):
        zoo.from_module(net, data=data, treshold=2.0)
    with pytest.raises(ValueError, match=r"registered model's name"):
        zoo.from_module(net, data=data, name="logreg")
    with pytest.raises(ValueError, match=r"pass data="):
        zoo.from_module(net, data=None)


def test_round_trip_fit_resume_rebuild_evaluate_export(net_ref, tmp_path):
    data = _data()
    unbroken = zoo.from_module(net_ref, data=data, seed=0)
    res_a = zoo.fit(unbroken, data, config=_config(tmp_path / "a"))

    broken = zoo.from_module(net_ref, data=data, seed=0)
    original, calls = broken.model.forward, {"n": 0}

    def crash(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 9:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    broken.model.forward = crash
    with pytest.raises(KeyboardInterrupt):
        zoo.fit(broken, data, config=_config(tmp_path / "b"))
    assert load_checkpoint(tmp_path / "b")["step"] == 8

    fresh = zoo.from_module(net_ref, data=data, seed=5)
    torch.manual_seed(999)  # any RNG state: the checkpoint's must win
    res_b = zoo.fit(fresh, data, config=dataclasses.replace(_config(tmp_path / "b"), resume=True))
    assert res_b.steps == res_a.steps
    for p, q in zip(unbroken.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(p, q)

    # rebuilt from the reference the checkpoint records, with nothing passed again
    rebuilt, ckpt = from_checkpoint(str(tmp_path / "b"))
    assert ckpt["model"]["config"]["net"] == net_ref
    assert tuple(ckpt["model"]["config"]["layers"]) == ("1", "3")
    for p, q in zip(unbroken.parameters(), rebuilt.parameters(), strict=True):
        assert torch.equal(p, q)
    pyro.set_rng_seed(1)
    expected = unbroken.evaluate(data)
    pyro.set_rng_seed(1)
    assert rebuilt.evaluate(data) == expected

    # the exported state dict, loaded into the user's own architecture, is the masked mean net
    export_job(str(tmp_path / "b"), str(tmp_path / "net.pt"))
    from zoo.models.custom import load_factory

    plain = load_factory(net_ref)(data.info)
    plain.load_state_dict(torch.load(tmp_path / "net.pt", weights_only=True))
    torch.testing.assert_close(
        plain(data.x_test), mean_net_outputs(rebuilt, data.x_test), atol=1e-6, rtol=0
    )


def test_a_net_given_as_an_instance_is_rebuilt_only_when_given_again(tmp_path):
    data = _data()
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    zm = zoo.from_module(net, data=data, prior="normal", seed=0)
    zoo.fit(zm, data, config=_config(tmp_path, num_epochs=1))
    with pytest.raises(ValueError, match=r"given as an instance.*net="):
        from_checkpoint(str(tmp_path))
    rebuilt, _ = from_checkpoint(
        str(tmp_path), net=nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    )
    for p, q in zip(zm.parameters(), rebuilt.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_named_function_is_recorded_and_a_bad_reference_is_refused(tmp_path):
    from zoo.models.custom import load_factory, net_reference

    assert net_reference(_data) == f"{__name__}:_data"
    assert net_reference(lambda: nn.Linear(6, 3)) == ""
    with pytest.raises(ValueError, match=r"no file"):
        load_factory(str(tmp_path / "missing.py") + ":make")
    with pytest.raises(ValueError, match=r"'package.module:function'"):
        load_factory("no_colon")
    with pytest.raises(ValueError, match=r"cannot import"):
        load_factory("not_a_module_anywhere:make")
    with pytest.raises(ValueError, match=r"'nope' is not a function"):
        load_factory("torch.nn:nope")


def test_uncertainty_scores_take_a_bernoulli_net():
    """A one-logit classifier gives (S, N, 2) class probabilities, (1 - p, p), to the
    uncertainty scores; mutual information lies in [0, log 2]."""
    from zoo.evaluate import mutual_information, predictive_draws

    data = _data(classes=2)
    zm = zoo.from_module(
        nn.Linear(6, 1), data=data, prior="normal", likelihood="bernoulli", init_scale=0.3
    )
    draws = predictive_draws(zm, data.x_test, num_samples=8)
    assert draws.shape == (8, 40, 2)
    torch.testing.assert_close(draws.sum(-1), torch.ones(8, 40), atol=1e-6, rtol=0)
    mi = mutual_information(draws)
    assert (mi >= -1e-6).all() and (mi <= torch.log(torch.tensor(2.0)) + 1e-6).all()
    assert mi.max() > 1e-3  # the draws differ: init_scale 0.3 is no point mass


def test_fit_on_a_plain_module_points_to_from_module():
    with pytest.raises(TypeError, match=r"got a Sequential; make a network Bayesian first"):
        zoo.fit(nn.Sequential(nn.Linear(6, 3)), _data())


def test_layers_selector_is_recorded_and_the_rest_stays_deterministic(tmp_path):
    """layers=nn.Conv1d makes only the convolution Bayesian; the head stays a point estimate,
    reported apart; the checkpoint records the chosen names, so a rebuild chooses the same."""
    from zoo.models.bnn import layer_report

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, 8, generator=gen)
    data = from_tensors(x, (x[:, 0, :4].sum(-1) > 0).long())

    def make_net():
        return nn.Sequential(
            nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 2)
        )

    zm = zoo.from_module(make_net, data=data, layers=nn.Conv1d, seed=0)
    assert zm.config.layers == ("0",)
    assert zm.guide.site_names == ["net.0.weight"]
    report = layer_report(zm)
    assert list(report["layer"]) == [
        "net.0.weight",
        "net.3",
        "total (deterministic, not counted)",
        "total (Bayesian weights)",
    ]
    assert int(report["weights"].iloc[-1]) == 4 * 2 * 3
    assert int(report["weights"].iloc[1]) == 32 * 2 + 2  # the Linear head's weight and bias
    zoo.fit(zm, data, config=_config(tmp_path, num_epochs=1))
    rebuilt, _ = from_checkpoint(str(tmp_path), net=make_net)
    assert rebuilt.guide.site_names == ["net.0.weight"]
    with pytest.raises(
        ValueError,
        match=r"pattern 'head\*' matches no Linear, Conv1d/2d/3d, RNN, LSTM or GRU layer"
        r".*0 \(Conv1d\)",
    ):
        zoo.from_module(make_net, data=data, layers=["head*"])
