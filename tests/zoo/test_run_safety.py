"""Issue 17, the trainer's side: checksummed checkpoints, clear messages for broken ones, the last
step's divergence, one run per folder (lock, refusal, stale locks), orphan temporary files,
resuming with other settings or more epochs, and the files' modes."""

import dataclasses
import gc
import os
import socket
import subprocess
import sys

import pandas as pd
import pytest
import torch

from zoo import DivergenceError, TrainConfig, Trainer, create_model, fit
from zoo.train import load_checkpoint
from zoo.train.rundir import StaleLockWarning


class Foreign:
    """An object a checkpoint must not hold: ``weights_only`` refuses it."""


def _cfg(out, **kw):
    base = dict(
        num_epochs=2,
        batch_size=200,
        lr=0.05,
        progress=False,
        eval_every=0,
        out_dir=None if out is None else str(out),
        checkpoint_every=2,
    )
    base.update(kw)
    return TrainConfig(**base)


def _ppca(data, seed=0):
    return create_model("ppca", data=data, latent_dim=3, seed=seed)


@pytest.fixture
def run(ppca_data, tmp_path):
    """A finished 2-epoch run (8 steps) in ``tmp_path / "run"``."""
    out = tmp_path / "run"
    fit(_ppca(ppca_data), ppca_data, config=_cfg(out))
    return out


# ------------------------------------------------------------------- item 2: checksum


def test_flipped_tensor_bytes_are_refused_naming_the_file(ppca_data, run):
    path = run / "checkpoint.pt"
    raw = bytearray(path.read_bytes())
    weights = load_checkpoint(path)["state"]["model"]["W_unconstrained"]
    at = bytes(raw).find(weights.numpy().tobytes())
    assert at > 0
    raw[at + 5] ^= 0x10  # one bit of one weight: torch alone would load it
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=rf"{path} is not a valid zoo checkpoint: .*checksum"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match="checksum"):
        fit(_ppca(ppca_data), ppca_data, config=_cfg(run, resume=True))


def test_a_checkpoint_without_checksum_loads_with_a_warning(run, tmp_path):
    ckpt = load_checkpoint(run)
    old = tmp_path / "old.pt"
    torch.save({**ckpt, "version": 1}, old)  # the format before checksums: a plain torch.save
    with pytest.warns(UserWarning, match=rf"{old} has no checksum"):
        again = load_checkpoint(old)
    assert torch.equal(
        again["state"]["model"]["W_unconstrained"], ckpt["state"]["model"]["W_unconstrained"]
    )


# ------------------------------------------------------------ item 12: broken checkpoints


@pytest.mark.parametrize("keep", [0, 3, 40, 0.5, -1])
def test_a_truncated_checkpoint_is_not_a_valid_zoo_checkpoint(run, keep):
    path = run / "checkpoint.pt"
    raw = path.read_bytes()
    cut = int(len(raw) * keep) if isinstance(keep, float) else keep % len(raw)
    path.write_bytes(raw[:cut])
    with pytest.raises(ValueError, match=rf"^{path} is not a valid zoo checkpoint: \S") as err:
        load_checkpoint(path)
    assert "weights_only" not in str(err.value) and "Errno" not in str(err.value)


def test_a_garbled_or_foreign_file_is_not_a_valid_zoo_checkpoint(run, tmp_path):
    garbled = tmp_path / "garbled.pt"
    garbled.write_bytes(os.urandom(3000))
    with pytest.raises(ValueError, match=rf"^{garbled} is not a valid zoo checkpoint: \S"):
        load_checkpoint(garbled)
    # a pickle holding an object weights_only refuses: never torch's advice to turn it off
    evil = tmp_path / "evil.pt"
    torch.save({"format": "zoo-checkpoint", "version": 1, "x": Foreign()}, evil)
    with pytest.raises(ValueError, match=rf"^{evil} is not a valid zoo checkpoint: \S") as err:
        load_checkpoint(evil)
    assert "weights_only" not in str(err.value)
    plain = tmp_path / "plain.pt"
    torch.save({"a": torch.zeros(2)}, plain)
    with pytest.raises(ValueError, match=rf"^{plain} is not a valid zoo checkpoint: \S"):
        load_checkpoint(plain)


# --------------------------------------------------------- item 3: divergence at the end


def _poison_update_at(trainer, step):
    """Make the update of step ``step`` (0-based) leave non-finite parameters behind, as an
    overflowing Adam step does: the loss and gradients of that step were finite."""
    original = trainer.update

    def poisoned():
        original()
        if trainer.steps == step + 1:
            with torch.no_grad():
                trainer.params[0].fill_(float("inf"))

    trainer.update = poisoned


@pytest.mark.parametrize("step", [7, 3])  # the very last step; one before a checkpoint
def test_a_divergence_is_never_saved_as_a_checkpoint(ppca_data, tmp_path, step):
    trainer = Trainer(_ppca(ppca_data), ppca_data, config=_cfg(tmp_path))
    _poison_update_at(trainer, step)
    with pytest.raises(DivergenceError, match=r"non-finite parameters.*last good") as err:
        trainer.run()
    ckpt = load_checkpoint(err.value.checkpoint)
    assert ckpt["step"] == step - 1  # checkpoints every 2 steps: after steps 2, 4 and 6
    assert all(torch.isfinite(t).all() for t in ckpt["state"]["model"].values())
    assert not (tmp_path / ".lock").exists()


def test_a_divergence_on_the_last_step_without_out_dir_raises(ppca_data):
    trainer = Trainer(_ppca(ppca_data), ppca_data, config=_cfg(None))
    _poison_update_at(trainer, 7)
    with pytest.raises(DivergenceError, match=r"step 7.*non-finite parameters.*No checkpoint"):
        trainer.run()


# --------------------------------------------------------------- item 7: one run per folder


def test_a_folder_holding_a_run_is_refused_unless_resumed_or_forced(ppca_data, run):
    before = (run / "checkpoint.pt").read_bytes()
    with pytest.raises(
        ValueError,
        match=rf"{run} already holds a run \(checkpoint.pt, config.json, metrics.csv\).*force",
    ):
        fit(_ppca(ppca_data), ppca_data, config=_cfg(run))
    assert (run / "checkpoint.pt").read_bytes() == before
    assert not (run / ".lock").exists()
    res = fit(_ppca(ppca_data), ppca_data, config=_cfg(run, num_epochs=1, force=True))
    assert res.steps == 4 and load_checkpoint(run)["step"] == 4
    assert len(pd.read_csv(run / "metrics.csv")) == 1


def test_a_second_run_on_a_locked_folder_fails_at_once(ppca_data, tmp_path):
    first = Trainer(_ppca(ppca_data), ppca_data, config=_cfg(tmp_path))
    lock = (tmp_path / ".lock").read_text()
    assert str(os.getpid()) in lock and socket.gethostname() in lock
    with pytest.raises(ValueError, match=rf"{tmp_path} is locked by this process.*close\(\)"):
        fit(_ppca(ppca_data), ppca_data, config=_cfg(tmp_path, force=True))
    first.run()
    assert not (tmp_path / ".lock").exists()
    fit(_ppca(ppca_data), ppca_data, config=_cfg(tmp_path, resume=True))  # free again


def test_a_stepped_trainer_releases_the_lock_when_closed_or_collected(ppca_data, tmp_path):
    trainer = Trainer(_ppca(ppca_data), ppca_data, config=_cfg(tmp_path))
    trainer.step()
    trainer.close()
    assert not (tmp_path / ".lock").exists()
    trainer = Trainer(_ppca(ppca_data), ppca_data, config=_cfg(tmp_path, force=True))
    assert (tmp_path / ".lock").exists()
    del trainer
    gc.collect()
    assert not (tmp_path / ".lock").exists()


def test_the_lock_is_released_when_setting_up_fails(ppca_data, run):
    with pytest.raises(ValueError, match="cannot resume"):
        fit(_ppca(ppca_data), ppca_data, config=_cfg(run, lr=0.01, resume=True))
    assert not (run / ".lock").exists()


def test_a_stale_lock_is_taken_over_with_a_warning(ppca_data, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(f'{{"pid": {dead.pid}, "host": "{socket.gethostname()}"}}')
    with pytest.warns(StaleLockWarning, match=rf"process {dead.pid} .* gone"):
        fit(_ppca(ppca_data), ppca_data, config=_cfg(tmp_path))
    assert not (tmp_path / ".lock").exists()


def test_a_lock_from_another_host_is_refused(ppca_data, tmp_path):
    (tmp_path / ".lock").write_text('{"pid": 1, "host": "elsewhere"}')
    with pytest.raises(ValueError, match=r"locked by process 1 on host elsewhere.*remove .*\.lock"):
        fit(_ppca(ppca_data), ppca_data, config=_cfg(tmp_path))
    assert (tmp_path / ".lock").exists()


# -------------------------------------------------------------- item 10: orphan temp files


def test_orphan_temporary_files_are_removed_at_the_next_start(ppca_data, run):
    orphans = [run / ".checkpoint.pt.k3j_x9q2.tmp", run / ".metrics.csv.abc12345.tmp"]
    others = [run / ".notes.abc.tmp", run / "checkpoint.pt.tmp", run / ".checkpoint.pt.a.b.tmp"]
    for path in orphans + others:
        path.write_bytes(b"x" * 100)
    fit(_ppca(ppca_data), ppca_data, config=_cfg(run, resume=True))
    assert not any(p.exists() for p in orphans)
    assert all(p.exists() for p in others)


# ------------------------------------------------------- item 14: resume with other settings


def test_resume_names_only_the_fields_that_differ(ppca_data, run):
    with pytest.raises(ValueError, match=r"cannot resume.*lr: checkpoint 0.05 → now 0.01") as err:
        fit(_ppca(ppca_data), ppca_data, config=_cfg(run, lr=0.01, resume=True))
    assert "batch_size" not in str(err.value)
    other = create_model("ppca", data=ppca_data, latent_dim=2, seed=0)
    with pytest.raises(ValueError, match=r"model.config.latent_dim: checkpoint 3 → now 2") as err:
        fit(other, ppca_data, config=_cfg(run, resume=True))
    assert "family" not in str(err.value) and "{" not in str(err.value)


def test_resume_with_more_epochs_extends_a_finished_run(ppca_data, run, tmp_path):
    short = load_checkpoint(run)
    zm = _ppca(ppca_data, seed=5)
    res = fit(zm, ppca_data, config=_cfg(run, num_epochs=4, resume=True))
    unbroken = _ppca(ppca_data)
    res_u = fit(unbroken, ppca_data, config=_cfg(tmp_path / "u", num_epochs=4))
    assert res.steps == res_u.steps == 16
    for p, q in zip(unbroken.parameters(), zm.parameters(), strict=True):
        assert torch.equal(p, q)  # a constant schedule: as if 4 epochs had been asked for
    pd.testing.assert_frame_equal(
        pd.DataFrame(short["history"]).drop(columns="seconds"),
        res.history.head(2).drop(columns="seconds"),
    )
    with pytest.raises(ValueError, match=r"num_epochs: checkpoint 4 → now 3.*may only grow"):
        fit(_ppca(ppca_data), ppca_data, config=_cfg(run, num_epochs=3, resume=True))


def test_extending_a_decaying_schedule_recomputes_it_with_the_new_total(ppca_data, tmp_path):
    cfg = _cfg(tmp_path, lr_schedule="linear", checkpoint_every=None)
    first = fit(_ppca(ppca_data), ppca_data, config=cfg)
    more = fit(
        _ppca(ppca_data), ppca_data, config=dataclasses.replace(cfg, num_epochs=4, resume=True)
    )
    pd.testing.assert_frame_equal(
        first.history.drop(columns="seconds"), more.history.head(2).drop(columns="seconds")
    )
    longer = dataclasses.replace(cfg, num_epochs=4)
    # the steps still to come follow the 4-epoch schedule: at the end of epoch 3, lr factor 1/4
    assert more.history["lr"].tolist()[2:] == pytest.approx(
        [0.05 * longer.lr_factor(3), 0.05 * longer.lr_factor(4)]
    )


# ------------------------------------------------------------------------ item 15: modes


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_checkpoint_and_metrics_get_the_mode_of_the_other_outputs(ppca_data, tmp_path, umask):
    old = os.umask(umask)
    try:
        fit(_ppca(ppca_data), ppca_data, config=_cfg(tmp_path, num_epochs=1))
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == dict.fromkeys(["checkpoint.pt", "metrics.csv", "config.json"], 0o666 & ~umask)
