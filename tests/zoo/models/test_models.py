"""Every registered model, parametrized over the registry: a new entry is tested by existing."""

import math

import pytest
import torch

from zoo import TrainConfig, create_model, fit, from_tensors, get_spec, list_models
from zoo.data import dataset_info


def _tiny_data(info, n=24):
    """Random data with the shapes and task of ``info``."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((n, *info.input_shape), generator=gen)
    if info.task == "classification":
        y = torch.randint(info.num_classes, (n,), generator=gen)
    elif info.task == "regression":
        y = torch.randn(n, generator=gen)
    else:
        y = None
    return from_tensors(
        x[:16],
        None if y is None else y[:16],
        x_test=x[16:],
        y_test=None if y is None else y[16:],
        num_classes=info.num_classes,
    )


@pytest.mark.parametrize("name", list_models())
def test_one_step_of_every_model_changes_its_parameters(name, tmp_path):
    spec = get_spec(name)
    data = _tiny_data(dataset_info(spec.dataset, **spec.dataset_kwargs))
    for guide in spec.guides:
        zm = create_model(name, data=data, guide=guide, seed=0)
        before = [p.detach().clone() for p in zm.parameters()]
        cfg = TrainConfig(
            **{
                **spec.train_defaults,
                "num_epochs": 1,
                "batch_size": 16,
                "progress": False,
                "out_dir": str(tmp_path / guide),
            }
        )
        result = fit(zm, data, config=cfg)
        assert result.steps == 1 and math.isfinite(result.losses[0])
        assert any(not torch.equal(a, b) for a, b in zip(before, zm.parameters(), strict=True))
        assert (tmp_path / guide / "checkpoint.pt").exists()
        metrics = zm.evaluate(data, "test")
        assert metrics and all(math.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize("name", list_models())
def test_every_entry_is_complete(name):
    spec = get_spec(name)
    assert spec.description and spec.reference and spec.family
    assert spec.dataset in __import__("zoo").list_datasets()
    TrainConfig(**spec.train_defaults)  # the family's defaults are valid settings
