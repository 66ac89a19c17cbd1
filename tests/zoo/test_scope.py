"""No global side effects: importing the zoo leaves Pyro's settings alone, the zoo scopes its
parameter handling to its own calls, and a zoo-made model and guide train in plain Pyro."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch
from pyro.infer import SVI, TraceMeanField_ELBO

from zoo import create_model, fit, load
from zoo.util import local_params

ROOT = Path(__file__).resolve().parents[2]

IMPORT_EVERYTHING = """
import importlib, json, pkgutil, sys
import pyro
before = {k: repr(v) for k, v in pyro.settings.get().items()}
import zoo, guides
names = ["guides"]
for pkg in (zoo, guides):
    for mod in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if mod.name != "zoo.__main__":  # it runs the CLI
            importlib.import_module(mod.name)
            names.append(mod.name)
for name in zoo.__all__:
    getattr(zoo, name)
after = {k: repr(v) for k, v in pyro.settings.get().items()}
print(json.dumps({"before": before, "after": after, "modules": names,
                  "params": list(pyro.get_param_store().keys())}))
"""


def test_importing_zoo_and_every_submodule_leaves_pyro_settings_unchanged():
    # a fresh interpreter: in this one the modules are imported already, which would hide it
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": ""},
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert "zoo.train.trainer" in found["modules"] and "zoo.compare.table" in found["modules"]
    assert len(found["modules"]) > 40
    assert found["before"]["module_local_params"] == "False"
    assert found["after"] == found["before"]
    assert found["params"] == []


def test_local_params_is_scoped_nests_and_restores_on_error():
    assert pyro.settings.get("module_local_params") is False

    @local_params()
    def inner():
        assert pyro.settings.get("module_local_params") is True
        raise RuntimeError("boom")

    with local_params():
        assert pyro.settings.get("module_local_params") is True
        with pytest.raises(RuntimeError, match="boom"):
            inner()
        assert pyro.settings.get("module_local_params") is True  # the outer scope holds
    assert pyro.settings.get("module_local_params") is False
    # the zoo's calls leave it as they found it, on or off
    create_model("logreg", data=load("digits"))
    assert pyro.settings.get("module_local_params") is False
    with local_params():
        create_model("logreg", data=load("digits"))
        assert pyro.settings.get("module_local_params") is True


def test_plain_pyro_svi_with_pyro_optim_trains_a_zoo_model_and_guide():
    """The example of docs/bnn.md ("Plain Pyro"): pyro.infer.SVI, pyro.optim.Adam."""
    data = load("digits")
    zm = create_model("logreg", data=data, seed=0)
    before = zm.evaluate(data, "test")["acc"]
    model, guide = zm.callables()  # inside the entry's effect handler, if any
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), TraceMeanField_ELBO())
    x, y, n = data.x_train, data.y_train, data.num_train
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(200):
        idx = torch.randint(0, n, (128,), generator=gen)
        losses.append(svi.step(x[idx], y[idx], num_data=n) / n)
    after = zm.evaluate(data, "test")["acc"]
    # untrained: about chance (10 classes); 200 steps of plain SVI: above 85%
    assert before < 0.3 and after > 0.85, (before, after)
    assert sum(losses[-20:]) < 0.6 * sum(losses[:20])  # -ELBO / N: about 5.1 -> 2.35
    # it trained through Pyro's global store, as any PyroModule does outside the zoo's calls
    assert "net.1.bias" in pyro.get_param_store().keys()
    assert pyro.settings.get("module_local_params") is False


def test_two_models_with_the_same_site_names_keep_their_own_parameters():
    data = load("regression-synthetic")
    scaled = load("regression-synthetic")
    scaled.y_train.mul_(10.0)  # a noisier target: its learned noise must be larger
    scaled.y_test.mul_(10.0)
    kw = dict(num_epochs=30, lr=0.03, progress=False, eval_every=0)
    a = create_model("mlp-regressor-normal", data=data, seed=0)
    b = create_model("mlp-regressor-normal", data=scaled, seed=0)
    assert a.model.likelihood.noise_unconstrained is not b.model.likelihood.noise_unconstrained
    fit(a, data, **kw)
    noise_a = a.model.likelihood.noise.detach().clone()
    fit(b, scaled, **kw)
    # b's run neither read nor moved a's noise, and nothing went to the global store
    assert torch.equal(a.model.likelihood.noise.detach(), noise_a)
    assert b.model.likelihood.noise.item() > 3 * noise_a.item(), (
        noise_a.item(),
        b.model.likelihood.noise.item(),
    )
    assert list(pyro.get_param_store().keys()) == []
    # and each evaluates with its own noise
    assert a.evaluate(data)["nll"] < b.evaluate(scaled)["nll"]


def test_a_zoo_model_of_modules_built_outside_the_scope_still_trains():
    # a user's own PyroModules, built without the setting: Pyro gave them no local parameter
    # state, which ZooModel adds (else the zoo's calls would fail inside Pyro)
    from zoo.spec import ZooModel

    data = load("digits")
    ref = create_model("logreg", data=data)
    model = ref.spec.build_model(ref.config, ref.info)
    guide = ref.spec.guides[ref.guide_name](ref.config, ref.info, model)
    zm = ZooModel(ref.spec, ref.config, ref.info, ref.guide_name, model, guide, ref.handler)
    result = fit(zm, data, num_epochs=3, progress=False)
    assert result.history["test_acc"].iloc[-1] > 0.6
    assert list(pyro.get_param_store().keys()) == []
