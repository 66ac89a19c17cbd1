"""The fault suite (issue 17): tiny runs killed at seeded random points resume bit-identically,
damaged checkpoints are refused, two runs never share a folder, and a full disk loses nothing.

The faults are injected in subprocesses (tests/zoo/fault_worker.py); the checks run here.
All of it takes a few seconds: the workers start together.
"""

import dataclasses
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from zoo import fit
from zoo.train import load_checkpoint
from zoo.train.rundir import StaleLockWarning

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fault_worker import build  # noqa: E402

#: (step, phase) of each kill, drawn once from a seeded generator: 21 steps in the run, a
#: checkpoint after each (step 1's is there before any kill).
KILLS = [
    (r.randint(2, 20), r.choice(["step", "fsync", "replace"]))
    for r in [random.Random(17)]
    for _ in range(4)
]


def _start(out, *args):
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1]), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, str(HERE / "fault_worker.py"), str(out), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory):
    """The run, never interrupted: its parameters, history and final checkpoint."""
    out = tmp_path_factory.mktemp("unbroken")
    zm, data, config = build(out)
    result = fit(zm, data, config=config)
    return [p.detach().clone() for p in zm.parameters()], result.history, out / "checkpoint.pt"


def _resumed(config, how="resume"):
    # checkpoints once an epoch: how often they are written never changes the run
    return dataclasses.replace(config, checkpoint_every=None, **{how: True})


def _resume_and_compare(out, unbroken, how="resume"):
    params, history, _ = unbroken
    zm, data, config = build(out)
    torch.manual_seed(12345)  # whatever the random state here: the checkpoint's must win
    with pytest.warns(StaleLockWarning, match="gone"):
        result = fit(zm, data, config=_resumed(config, how))
    for p, q in zip(params, zm.parameters(), strict=True):
        assert torch.equal(p, q)
    pd.testing.assert_frame_equal(
        history.drop(columns="seconds"), result.history.drop(columns="seconds")
    )
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "metrics.csv"]


def test_killed_runs_resume_bit_identically(unbroken, tmp_path):
    workers = {kill: _start(tmp_path / f"{kill[0]}-{kill[1]}", "kill", *kill) for kill in KILLS}
    errors = {kill: worker.communicate(timeout=120)[1] for kill, worker in workers.items()}
    for (step, phase), worker in workers.items():
        assert worker.returncode == -signal.SIGKILL, errors[step, phase]
        out = tmp_path / f"{step}-{phase}"
        assert (out / ".lock").exists()  # a killed run cannot remove it: the next one will
        # killed after step's update, or inside the writing of its checkpoint: the last one
        # renamed into place is the step before's
        assert load_checkpoint(out)["step"] == step - 1
        _resume_and_compare(out, unbroken)  # orphan .tmp files and the stale lock removed


def test_a_flipped_byte_anywhere_in_a_checkpoint_is_refused(unbroken, tmp_path):
    raw = unbroken[2].read_bytes()
    rng = random.Random(3)
    for trial in range(40):
        damaged = bytearray(raw)
        at = rng.randrange(len(raw))
        damaged[at] ^= 1 << rng.randrange(8)
        path = tmp_path / f"flip{trial}.pt"
        path.write_bytes(bytes(damaged))
        with pytest.raises(ValueError, match=rf"^{path} is not a valid zoo checkpoint: \S"):
            load_checkpoint(path)


def test_a_second_run_on_the_same_folder_fails_at_once(unbroken, tmp_path):
    holder = _start(tmp_path, "hold")
    try:
        assert holder.stdout.readline().strip() == "ready", holder.stderr.read()
        zm, data, config = build(tmp_path)
        started = time.perf_counter()
        with pytest.raises(ValueError, match=rf"locked by a running process \(pid {holder.pid} "):
            fit(zm, data, config=config)
        assert time.perf_counter() - started < 5
    finally:
        holder.kill()
        holder.communicate()
    # the holder is gone before its first checkpoint: its lock is stale, its run started over
    _resume_and_compare(tmp_path, unbroken, how="force")


@pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="a full disk is simulated with RLIMIT_FSIZE (EFBIG), which only Linux is checked for",
)
def test_a_full_disk_keeps_the_last_good_checkpoint(unbroken, tmp_path):
    # A small filesystem (tmpfs, a loop device) needs root to mount; a file-size limit makes
    # every write past it fail with EFBIG as a full disk's do with ENOSPC.
    worker = _start(tmp_path, "quota", 3, 4000)
    stdout, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["errno"] == errno.EFBIG
    assert str(tmp_path / "checkpoint.pt") in report["message"]
    assert load_checkpoint(tmp_path)["step"] == 3  # the last good one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "config.json"]
    zm, data, config = build(tmp_path)
    result = fit(zm, data, config=_resumed(config))
    for p, q in zip(unbroken[0], zm.parameters(), strict=True):
        assert torch.equal(p, q)
    assert len(result.history) == 3
