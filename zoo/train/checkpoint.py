"""Checkpoints: atomic writes, every random state, and the checks before a run resumes.

A checkpoint is one ``torch.save``'d dict (``format: "zoo-checkpoint"``, ``version``
:data:`CHECKPOINT_VERSION`) holding the model's and optimizer's state, the scheduler's, the
random state of every rank, the step, the history and the run's settings; it loads with
``weights_only=True``.  Files are written to a temporary name, fsynced and renamed, so that a
crash leaves the old checkpoint or the new one, never a torn file.

Usage::

    from zoo.train import load_checkpoint
    ckpt = load_checkpoint("runs/ppca")             # the folder, or the file itself
    ckpt["step"], ckpt["history"][-1]
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from zoo.spec import ZooModel
from zoo.train.config import TrainConfig

__all__ = [
    "CHECKPOINT_NAME",
    "CHECKPOINT_VERSION",
    "METRICS_NAME",
    "RESUME_FREE",
    "atomic_save",
    "atomic_write_text",
    "check_resumable",
    "load_checkpoint",
    "rng_preserved",
    "rng_state",
    "set_rng_state",
]

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.csv"
#: The format written and the only one read.
CHECKPOINT_VERSION = 1

#: Fields that may differ between a run and its resumption without changing the trajectory.
RESUME_FREE = frozenset(
    {"device", "progress", "out_dir", "resume", "force", "eval_every", "validate"}
)


def rng_state() -> dict[str, Any]:
    """torch's, Python's and (when present) every CUDA device's random state."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss],  # plain lists: weights_only loading
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def rng_preserved() -> Iterator[None]:
    """Run a block without touching the random streams: every state :func:`rng_state` holds
    (torch's, Python's, each CUDA device's) is restored on exit, exceptions included.

    The trainer evaluates, runs ``on_epoch`` and checks for collapse inside it, so whatever
    those draw (Monte-Carlo predictions, guide samples) comes from a stream that training never
    sees: the same seed gives bit-identical parameters whatever ``eval_every`` is.

    Usage::

        with rng_preserved():
            zm.evaluate(data, "test")       # draws, then the stream is put back
    """
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def atomic_save(obj: Any, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``: a crash
    leaves either the old checkpoint or the new one, never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(text: str, path: Path) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`zoo.train.fit`.

    :param path: the checkpoint file, or the folder holding ``checkpoint.pt``.
    :param map_location: where its tensors are loaded.
    :raises FileNotFoundError: if there is none.
    :raises ValueError: if the file is not a zoo checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable zoo checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != "zoo-checkpoint":
        raise ValueError(f"{path} is not a zoo checkpoint")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {ckpt.get('version')} is not supported")
    return ckpt


def check_resumable(
    ckpt: dict, zm: ZooModel, cfg: TrainConfig, num_data: int, fingerprint: str | None = None
) -> None:
    """Refuse a checkpoint written by another model, other settings (those outside
    :data:`RESUME_FREE`), another training-set size or, given ``fingerprint``, other training
    data (its :func:`zoo.data.fingerprint`, e.g. a user's file changed since).

    :raises ValueError: naming every mismatch.
    """
    mismatches = []
    if ckpt["model"] != zm.describe():
        mismatches.append(f"model {ckpt['model']} != {zm.describe()}")
    # a field added after the checkpoint was written counts as its default
    defaults = dataclasses.asdict(TrainConfig())
    saved = {k: v for k, v in {**defaults, **ckpt["train_config"]}.items() if k not in RESUME_FREE}
    now = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RESUME_FREE}
    mismatches += [
        f"{k}: checkpoint {saved.get(k)!r}, now {v!r}" for k, v in now.items() if saved.get(k) != v
    ]
    if ckpt["num_data"] != num_data:
        mismatches.append(f"training set size: checkpoint {ckpt['num_data']}, now {num_data}")
    elif fingerprint is not None and ckpt.get("data_fingerprint", fingerprint) != fingerprint:
        mismatches.append(
            f"training data: checkpoint fingerprint {ckpt['data_fingerprint']}, now {fingerprint}"
        )
    if mismatches:
        raise ValueError(
            "cannot resume: the checkpoint was written by a different run ("
            + "; ".join(mismatches)
            + "). Use the same settings, or a new out_dir."
        )
