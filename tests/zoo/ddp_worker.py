"""Run by ``torchrun`` from tests/zoo/test_distributed.py: distributed fits, each rank saving what
it ended with (its parameters, the averaged gradients of step 0, the losses) to ``OUT``."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.optim.optimizer import register_optimizer_step_pre_hook

from zoo import create_model, fit, load

#: Deterministic: MC dropout with rate 0 draws no noise, so the step-0 loss and gradients can be
#: compared with a single process exactly.  ``hidden=(16,)`` keeps it fast.
EXACT = {
    "name": "lenet300-normal",
    "guide": "mc-dropout",
    "hidden": (16,),
    "dropout": 0.0,
    "input_dropout": 0.0,
}
#: Noisy: SparseVD with the local reparameterization, each rank drawing its own noise.
NOISY = {"name": "lenet300-loguniform", "guide": "sparse-vd", "hidden": (16,)}
TRAIN = {
    "num_epochs": 1,
    "batch_size": 64,
    "lr": 1e-2,
    "kl_warmup_start": 0.0,
    "kl_warmup_end": 0.0,
    "lr_schedule": "constant",
    "eval_every": 0,
    "device": "cpu",
    "progress": False,
    "seed": 0,
    "distributed": True,
}


def build(spec: dict, data):
    spec = dict(spec)
    return create_model(spec.pop("name"), data=data, seed=0, **spec)


def main(out: Path) -> None:
    data = load("digits")
    grads: dict[int, torch.Tensor] = {}

    def first_grads(optimizer, args, kwargs):
        if not grads:
            params = optimizer.param_groups[0]["params"]
            grads.update({i: p.grad.detach().clone() for i, p in enumerate(params)})

    handle = register_optimizer_step_pre_hook(first_grads)
    saved = {}
    # the noisy run also anneals the KL from beta = 0 (every parameter must still get a gradient
    # for DDP's all-reduce) and skips validation, as a user asking for speed would
    noisy = {"kl_warmup_end": 1.0, "validate": False}
    for label, spec, extra in (("exact", EXACT, {}), ("noisy", NOISY, noisy)):
        grads.clear()
        zm = build(spec, data)
        result = fit(zm, data, **{**TRAIN, **extra}, out_dir=str(out / label))
        saved[label] = {
            "params": [p.detach().clone() for p in zm.parameters()],
            "grads": dict(grads),
            "losses": result.losses,
            "steps": result.steps,
        }
    handle.remove()
    torch.save(saved, out / f"rank{dist.get_rank()}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
