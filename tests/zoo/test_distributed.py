"""Distributed training (zoo.distributed): two gloo processes on the CPU, spawned by torchrun.

Checked against a single process: DDP averages the ranks' gradients of
``(N/B) sum_batch log p - KL``, which must be the gradient of the single-process ELBO on the
union of the two minibatches, ``(N/2B) sum_union log p - KL`` (module docstring of
zoo.distributed).  The deterministic model (MC dropout at rate 0) makes this an exact identity,
so the tolerance is float32 round-off of a sum in another order: 1e-5 relative.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zoo import load
from zoo.elbo import make_elbo
from zoo.train import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "zoo"))
from ddp_worker import EXACT, TRAIN, build  # noqa: E402

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch built without torch.distributed"
)


def _torchrun(args: list[str], nproc: int = 2, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc-per-node", str(nproc), *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> tuple[dict, dict, Path]:
    out = tmp_path_factory.mktemp("ddp")
    _torchrun([str(ROOT / "tests" / "zoo" / "ddp_worker.py"), str(out)])
    return torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt"), out


def test_both_ranks_end_with_identical_parameters(ranks):
    r0, r1, _ = ranks
    for label in ("exact", "noisy"):
        assert r0[label]["steps"] == r1[label]["steps"] == 1437 // 128  # N // (R B), tail left
        for a, b in zip(r0[label]["params"], r1[label]["params"], strict=True):
            assert torch.equal(a, b), label
        assert r0[label]["losses"] == r1[label]["losses"]  # the averaged loss, on every rank


def test_one_step_equals_a_single_process_on_the_union_of_the_minibatches(ranks, one_thread):
    r0, _, _ = ranks
    data = load("digits")
    n, batch = data.num_train, TRAIN["batch_size"]
    # the minibatch layout of zoo.fit: one permutation per epoch, rank r takes slice r
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(TRAIN["seed"] * 1_000_003))
    union = perm[: 2 * batch]
    zm = build(EXACT, data)
    model, guide = zm.callables()
    elbo = make_elbo("meanfield")
    loss = elbo.loss_and_grads(model, guide, data.x_train[union], data.y_train[union], num_data=n)
    assert r0["exact"]["losses"][0] == pytest.approx(loss / n, rel=1e-5)
    grads = r0["exact"]["grads"]
    params = list(zm.parameters())
    assert len(grads) == len(params)
    for i, p in enumerate(params):
        torch.testing.assert_close(grads[i], p.grad, rtol=1e-5, atol=1e-5 * p.grad.abs().max())


def test_the_noise_differs_between_ranks_but_not_the_step(ranks):
    # with its own seed, each rank's LRT noise differs: a run with one seed for all would still
    # pass the tests above, so check that rank 1 is not a copy of a single process on rank 0
    _r0, _, out = ranks
    ckpt = load_checkpoint(out / "noisy")
    assert ckpt["world_size"] == 2
    states = [s["torch"] for s in ckpt["rng_ranks"]]
    assert not torch.equal(states[0], states[1])


def test_cli_under_torchrun_writes_from_rank_0_only(tmp_path):
    out = tmp_path / "run"
    args = ["-m", "zoo", "train", "logreg", "--distributed", "--device", "cpu"]
    args += ["--num-epochs", "1", "--batch-size", "200", "--eval-every", "0", "--no-progress"]
    args += ["--no-plots", "--out", str(out)]
    proc = _torchrun(args)
    assert proc.stdout.count("training logreg") == 1  # one rank reports
    ckpt = load_checkpoint(out)
    assert ckpt["world_size"] == 2 and ckpt["step"] == 1437 // 400
    assert (out / "evaluation.json").exists()
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    # every rank's random state is kept, and so a different number of processes cannot resume
    assert len(ckpt["rng_ranks"]) == 2
    one = _torchrun([*args, "--resume"], nproc=1, check=False)
    assert one.returncode != 0 and "written by 2 process(es), this run has 1" in one.stderr


def test_distributed_without_a_process_group_is_a_clear_error(monkeypatch):
    from zoo import create_model, fit

    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    data = load("digits")
    zm = create_model("logreg", data=data)
    with pytest.raises(ValueError, match="launch with torchrun"):
        fit(zm, data, num_epochs=1, distributed=True, progress=False, device="cpu")
