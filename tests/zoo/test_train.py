"""The SVI loop: objective and its scale, schedules, checkpoints, resume, guards, devices."""

import dataclasses
import math

import pandas as pd
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from zoo import Dataset, DivergenceError, TrainConfig, create_model, fit, from_tensors
from zoo.elbo import make_elbo
from zoo.handlers import KLAnnealing
from zoo.train import load_checkpoint, resolve_device

# ---------------------------------------------------------------------------- schedules


def test_kl_warmup_follows_the_molchanov_recipe():
    # beta = 0 for epochs 0-4, then linear to 1 at epoch 20 (Molchanov et al. 2017)
    cfg = TrainConfig(num_epochs=200, kl_warmup_start=5, kl_warmup_end=20)
    assert [cfg.beta(e) for e in (0, 4.99, 5, 12.5, 20, 150)] == [0, 0, 0, 0.5, 1, 1]
    assert TrainConfig().beta(0) == 1.0
    assert TrainConfig(kl_weight=0.25).beta(3) == 0.25


def test_lr_schedules():
    linear = TrainConfig(num_epochs=200, lr_schedule="linear", lr_decay_start=0.5)
    assert [linear.lr_factor(e) for e in (0, 100, 150, 200)] == [1, 1, 0.5, 0]
    cosine = TrainConfig(num_epochs=100, lr_schedule="cosine")
    assert cosine.lr_factor(50) == pytest.approx(0.5) and cosine.lr_factor(100) == pytest.approx(0)
    assert TrainConfig(num_epochs=10).lr_factor(9) == 1.0


def test_bad_settings_are_refused_with_every_problem_named():
    with pytest.raises(ValueError, match=r"num_epochs.*batch_size"):
        TrainConfig(num_epochs=0, batch_size=0)
    with pytest.raises(ValueError, match="elbo must be one of"):
        TrainConfig(elbo="renyi")
    with pytest.raises(ValueError, match="resume needs out_dir"):
        TrainConfig(resume=True)


# ---------------------------------------------------------------------------- objective


def test_latent_scale_weights_exactly_the_kl_part(ppca_data):
    # loss = -[log p(x|z) + beta (log p(z) - log q(z|x))] at the same sample z
    zm = create_model("ppca", data=ppca_data, guide="amortized", latent_dim=3, seed=0)
    x = ppca_data.x_train[:64]
    anneal = KLAnnealing()
    anneal.beta = 0.3
    pyro.set_rng_seed(5)
    loss = Trace_ELBO().loss(anneal(zm.model), anneal(zm.guide), x, None, num_data=64)
    pyro.set_rng_seed(5)
    guide_tr = poutine.trace(zm.guide).get_trace(x, None, num_data=64)
    model_tr = poutine.trace(poutine.replay(zm.model, guide_tr)).get_trace(x, None, num_data=64)
    log_px = model_tr.nodes["x"]["fn"].log_prob(x).sum().item()
    log_pz = model_tr.nodes["z"]["fn"].log_prob(model_tr.nodes["z"]["value"]).sum().item()
    log_qz = guide_tr.nodes["z"]["fn"].log_prob(guide_tr.nodes["z"]["value"]).sum().item()
    assert loss == pytest.approx(-(log_px + 0.3 * (log_pz - log_qz)), rel=1e-5)


@pytest.mark.parametrize("name", ["trace", "meanfield", "tracegraph", "traceenum"])
def test_every_elbo_gives_the_exact_log_likelihood_with_the_exact_posterior(ppca_data, name):
    zm = create_model("ppca", data=ppca_data, latent_dim=3, seed=0)
    x = ppca_data.x_train
    exact = zm.model.log_likelihood(x).double().sum().item()
    elbo = make_elbo(name)
    if name == "traceenum":  # PPCA has nothing to enumerate, and Pyro says so
        with pytest.warns(UserWarning, match="no sample sites configured for enumeration"):
            loss = elbo.loss(zm.model, zm.guide, x, None, num_data=x.shape[0])
    else:
        loss = elbo.loss(zm.model, zm.guide, x, None, num_data=x.shape[0])
    assert loss == pytest.approx(-exact, rel=1e-5)


def test_vectorized_particles_agree_with_sequential_ones(ppca_data):
    x = ppca_data.x_train
    zm = create_model("ppca", data=ppca_data, latent_dim=3, seed=0)
    exact = -zm.model.log_likelihood(x).double().sum().item()
    vec = make_elbo("trace", num_particles=4, vectorize_particles=True)
    assert vec.loss(zm.model, zm.guide, x, None, num_data=800) == pytest.approx(exact, rel=1e-5)
    # Bayesian PCA samples W: the two estimators agree within Monte-Carlo error (4 s.e.)
    zm = create_model("bpca", data=ppca_data, latent_dim=4, seed=0)
    seq = [make_elbo("trace").loss(zm.model, zm.guide, x, None, num_data=800) for _ in range(200)]
    vec = make_elbo("trace", num_particles=200, vectorize_particles=True)
    many = [vec.loss(zm.model, zm.guide, x, None, num_data=800) for _ in range(5)]
    se = torch.tensor(seq).std().item() / math.sqrt(200)
    assert abs(sum(many) / 5 - sum(seq) / 200) < 4 * math.sqrt(se**2 + se**2 / 5)


def test_fit_trains_with_vectorized_particles(ppca_data):
    zm = create_model("bpca", data=ppca_data, latent_dim=4, seed=0)
    result = fit(
        zm, ppca_data, num_epochs=3, num_particles=3, vectorize_particles=True, progress=False
    )
    assert result.steps == 12 and all(math.isfinite(v) for v in result.losses)
    assert result.losses[-1] < result.losses[0]


# ---------------------------------------------------------------------------- the loop


def _poison_after(zm, calls, poison):
    original = zm.model.forward
    count = {"n": 0}

    def forward(*args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            poison()
        return original(*args, **kwargs)

    zm.model.forward = forward


def _short(tmp_path, **kw):
    base = dict(
        num_epochs=3,
        batch_size=128,
        lr=0.05,
        progress=False,
        out_dir=str(tmp_path),
        checkpoint_every=2,
        kl_warmup_start=0.5,
        kl_warmup_end=2.0,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_history_and_metrics_csv(ppca_data, tmp_path):
    zm = create_model("ppca", data=ppca_data, guide="amortized", latent_dim=3, seed=0)
    cfg = _short(tmp_path)
    result = fit(zm, ppca_data, config=cfg)
    steps_per_epoch = math.ceil(800 / 128)
    assert result.steps == 3 * steps_per_epoch
    csv = pd.read_csv(tmp_path / "metrics.csv")
    assert list(csv["epoch"]) == [1, 2, 3]
    assert list(csv["step"]) == [7, 14, 21]
    assert csv["beta"].tolist() == pytest.approx([cfg.beta(s / 7) for s in (6, 13, 20)])
    assert {"loss", "lr", "seconds", "test_log_lik", "test_recon_mse"} <= set(csv.columns)
    assert csv["loss"].tolist() == pytest.approx(result.history["loss"].tolist())
    # the epoch loss is the mean of the per-example step losses
    assert csv["loss"][0] == pytest.approx(sum(result.losses[:7]) / 7)
    assert not list(tmp_path.glob("*.tmp"))


def test_on_epoch_runs_once_per_epoch_in_eval_mode_and_joins_the_history(ppca_data):
    """The hook sees the model without gradients and in eval mode, once per epoch, and its
    metrics land in that epoch's row; training mode is restored after it."""
    zm = create_model("ppca", data=ppca_data, guide="amortized", latent_dim=3, seed=0)
    seen = []

    def on_epoch(model):
        seen.append((model.model.training, torch.is_grad_enabled()))
        return {"calls": float(len(seen))}

    result = fit(
        zm,
        ppca_data,
        num_epochs=3,
        batch_size=400,
        eval_every=0,
        progress=False,
        on_epoch=on_epoch,
    )
    assert seen == [(False, False)] * 3
    assert result.history["calls"].tolist() == [1.0, 2.0, 3.0]
    assert zm.model.training


def _crash_after(zm, calls):
    """Make the model raise on its ``calls + 1``-th call, like a killed process."""

    def crash():
        raise KeyboardInterrupt

    _poison_after(zm, calls, crash)


def test_resume_continues_bit_identically(ppca_data, tmp_path):
    # the amortized guide draws z, so the RNG state matters as much as the parameters
    cfg_a = _short(tmp_path / "a")
    unbroken = create_model("ppca", data=ppca_data, guide="amortized", latent_dim=3, seed=0)
    res_a = fit(unbroken, ppca_data, config=cfg_a)

    cfg_b = _short(tmp_path / "b")
    broken = create_model("ppca", data=ppca_data, guide="amortized", latent_dim=3, seed=0)
    _crash_after(broken, 9)  # 9 steps done; the last checkpoint is at step 8, mid-epoch 2
    with pytest.raises(KeyboardInterrupt):
        fit(broken, ppca_data, config=cfg_b)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 8

    fresh = create_model("ppca", data=ppca_data, guide="amortized", latent_dim=3, seed=123)
    torch.manual_seed(999)  # any RNG state: the checkpoint's must win
    res_b = fit(fresh, ppca_data, config=dataclasses.replace(cfg_b, resume=True))
    assert res_b.steps == res_a.steps
    for p, q in zip(unbroken.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(p, q)
    assert res_b.losses == res_a.losses[8:]
    pd.testing.assert_frame_equal(
        res_a.history.drop(columns="seconds"), res_b.history.drop(columns="seconds")
    )


def test_resume_refuses_a_different_run(ppca_data, tmp_path):
    zm = create_model("ppca", data=ppca_data, latent_dim=3, seed=0)
    fit(zm, ppca_data, config=_short(tmp_path))
    with pytest.raises(ValueError, match=r"cannot resume.*lr: checkpoint 0.05 → now 0.01"):
        fit(zm, ppca_data, config=_short(tmp_path, lr=0.01, resume=True))
    other = create_model("ppca", data=ppca_data, latent_dim=2, seed=0)
    with pytest.raises(ValueError, match=r"cannot resume.*model"):
        fit(other, ppca_data, config=_short(tmp_path, resume=True))


def test_nan_in_the_data_is_refused_before_anything_is_written(ppca_data, tmp_path):
    zm = create_model("ppca", data=ppca_data, latent_dim=3)
    x = ppca_data.x_train.clone()
    x[17, 3] = float("nan")
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="non-finite"):
        fit(zm, x, config=_short(out))
    # a hand-made Dataset skips from_tensors' checks; fit checks again at its boundary
    bad = Dataset("bad", x, None, ppca_data.x_test, None, ppca_data.info, {}, {})
    with pytest.raises(ValueError, match="non-finite"):
        fit(zm, bad, config=_short(out))
    assert not out.exists()


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(ppca_data, tmp_path):
    zm = create_model("ppca", data=ppca_data, latent_dim=3, seed=0)
    _poison_after(zm, 5, lambda: pyro.factor("poison", torch.tensor(float("nan"))))
    with (
        pyro.validation_enabled(False),
        pytest.raises(
            DivergenceError,
            match=r"diverged at step 5 \(epoch 0, batch 5\): loss nan"
            r".*last good checkpoint is kept at .*checkpoint.pt",
        ) as err,
    ):
        fit(zm, ppca_data, config=_short(tmp_path, checkpoint_every=1))
    assert err.value.step == 5
    ckpt = load_checkpoint(err.value.checkpoint)
    assert ckpt["step"] == 5
    assert all(torch.isfinite(t).all() for t in ckpt["state"]["model"].values())
    assert not list(tmp_path.glob("*.tmp"))


def test_nan_parameters_refused_by_validation_count_as_divergence(ppca_data, tmp_path):
    zm = create_model("ppca", data=ppca_data, latent_dim=3, seed=0)

    def poison():
        with torch.no_grad():
            zm.model.mu_unconstrained.fill_(float("nan"))

    _poison_after(zm, 3, poison)
    with pytest.raises(DivergenceError, match=r"step 3.*invalid parameters") as err:
        fit(zm, ppca_data, config=_short(tmp_path, checkpoint_every=1))
    assert load_checkpoint(err.value.checkpoint)["step"] == 3


def test_a_non_finite_gradient_stops_training_before_the_update(ppca_data):
    zm = create_model("ppca", data=ppca_data, latent_dim=3, seed=0)
    raw = dict(zm.model.named_parameters())["W_unconstrained"]
    raw.register_hook(lambda g: g * float("inf"))
    before = zm.model.W.detach().clone()
    with pytest.raises(DivergenceError, match=r"step 0.*non-finite gradient.*No checkpoint"):
        fit(zm, ppca_data, num_epochs=1, progress=False)
    assert torch.equal(zm.model.W.detach(), before)


def test_data_and_model_shapes_must_match(ppca_data):
    zm = create_model("ppca", latent_dim=2)  # built for digits
    with pytest.raises(ValueError, match=r"built for inputs of shape \(1, 8, 8\)"):
        fit(zm, ppca_data, progress=False)
    with pytest.raises(ValueError, match="labels inside the Dataset"):
        fit(zm, ppca_data, torch.zeros(800), progress=False)


def test_fit_accepts_plain_tensors():
    torch.manual_seed(0)
    x = torch.randn(300, 3) @ torch.randn(3, 6) + 0.1 * torch.randn(300, 6)
    zm = create_model("ppca", data=x, latent_dim=3, seed=0)
    result = fit(zm, x, num_epochs=40, batch_size=300, progress=False, eval_every=0)
    assert result.history["loss"].iloc[-1] < result.history["loss"].iloc[0]


# ---------------------------------------------------------------------------- devices


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_it_is_a_clear_error(ppca_data):
    with pytest.raises(ValueError, match=r"no CUDA device is available.*device='cpu'"):
        resolve_device("cuda")
    zm = create_model("ppca", data=ppca_data)
    with pytest.raises(ValueError, match="no CUDA device"):
        fit(zm, ppca_data, device="cuda", progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_on_cuda_keeps_everything_on_the_device(ppca_data):
    zm = create_model("bpca", data=ppca_data, latent_dim=4, seed=0)
    result = fit(zm, ppca_data, device="cuda", num_epochs=2, progress=False)
    assert result.device.type == "cuda"
    assert all(p.is_cuda for p in zm.parameters()) and zm.model.alpha.is_cuda


def test_from_tensors_data_keeps_labels_for_supervised_use():
    ds = from_tensors(torch.rand(10, 4), torch.arange(10) % 2)
    assert ds.info.task == "classification" and ds.y_train is not None
