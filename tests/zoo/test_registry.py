import dataclasses

import pytest
import torch

from zoo import DataInfo, create_model, get_spec, list_models, register_model
from zoo.spec import ModelSpec, config_from_dict


def test_every_family_is_registered():
    assert {"ppca", "bpca"} <= set(list_models())
    assert list_models() == sorted(list_models())
    assert list_models("ppca") == ["bpca", "ppca"]
    assert list_models("bpca") == ["bpca-vb"]


def test_round_trip_rebuilds_the_same_model():
    zm = create_model("ppca", latent_dim=3, seed=1)
    desc = zm.describe()
    again = create_model(
        desc["name"], data=DataInfo(**desc["info"]), guide=desc["guide"], **desc["config"]
    )
    again.load_state_dict(zm.state_dict())
    assert again.config == zm.config and again.guide_name == zm.guide_name
    for a, b in zip(zm.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)


def test_create_model_uses_defaults_and_overrides():
    zm = create_model("bpca")
    spec = get_spec("bpca")
    assert zm.config == spec.config and zm.guide_name == spec.default_guide
    assert zm.info.input_shape == (1, 8, 8)  # digits, read without loading the data
    assert create_model("ppca", latent_dim=5).config.latent_dim == 5


def test_seed_makes_initialization_reproducible():
    a = create_model("ppca", seed=3).model.W
    b = create_model("ppca", seed=3).model.W
    c = create_model("ppca", seed=4).model.W
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_unknown_model_names_the_closest_matches():
    with pytest.raises(ValueError, match="Did you mean 'ppca'"):
        create_model("ppcaa")
    with pytest.raises(ValueError, match=r"Known: .*bpca, bpca-vb, lenet300-loguniform"):
        create_model("totally-unknown")


def test_unknown_guide_and_config_field_are_clear_errors():
    with pytest.raises(ValueError, match="Did you mean 'amortized'"):
        create_model("ppca", guide="amortised")
    with pytest.raises(ValueError, match="Did you mean 'latent_dim'"):
        create_model("ppca", latent_dims=3)
    with pytest.raises(ValueError, match="latent_dim must be >= 1"):
        create_model("ppca", latent_dim=0)


def test_config_from_dict_turns_lists_back_into_tuples():
    cfg = config_from_dict(get_spec("ppca").config, {"encoder_hidden": [8, 4]})
    assert cfg.encoder_hidden == (8, 4)


def test_duplicate_and_malformed_registrations_are_refused():
    spec = get_spec("ppca")
    with pytest.raises(ValueError, match="already registered"):
        register_model(spec)
    with pytest.raises(ValueError, match="default guide"):
        dataclasses.replace(spec, name="x", default_guide="nope")
    with pytest.raises(ValueError, match="elbo must be one of"):
        dataclasses.replace(spec, name="x", elbo="renyi")

    @dataclasses.dataclass
    class Mutable:
        a: int = 1

    with pytest.raises(TypeError, match="frozen"):
        ModelSpec(
            **{
                **{f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)},
                "name": "x",
                "config": Mutable(),
            }
        )


def test_parameters_are_listed_once_even_when_the_guide_reads_the_model():
    zm = create_model("ppca")  # the analytic guide reads W, mu, sigma of the model
    ids = [id(p) for p in zm.parameters()]
    assert len(ids) == len(set(ids)) == len(list(zm.model.parameters()))
    assert zm.guide.state_dict() == {}


@pytest.mark.parametrize(
    "module", ["guides", "guides.dropout", "zoo.handlers.lrt", "zoo.priors", "zoo"]
)
def test_each_package_imports_first_in_a_fresh_interpreter(module):
    """zoo's families import guides and guides import zoo: no import order may break."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
