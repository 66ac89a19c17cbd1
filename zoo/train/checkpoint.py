"""Checkpoints: atomic writes, checksums, every random state, and the checks before a run resumes.

A checkpoint holds one ``torch.save``'d dict (``format: "zoo-checkpoint"``, ``version``
:data:`CHECKPOINT_VERSION`) with the model's and optimizer's state, the scheduler's, the
random state of every rank, the step, the history and the run's settings; it loads with
``weights_only=True``.  The file is a header line, ``ZOO-CHECKPOINT sha256 <hex digest>``, then
the ``torch.save`` bytes: every load checks the digest first (torch does not check its zip's
CRCs, so a flipped bit in a tensor would load and silently change the model), and any damaged
byte, header included, makes the file refused.  A file written before checksums (a plain
``torch.save``, version 1) still loads, with a :class:`UserWarning` saying it is unverified.
Files are written to a temporary name, fsynced and renamed, so that a crash leaves the old
checkpoint or the new one, never a torn file; they get the mode ``open()`` gives (``0o666``
less the umask), like the run's other outputs.

Usage::

    from zoo.train import load_checkpoint
    ckpt = load_checkpoint("runs/ppca")             # the folder, or the file itself
    ckpt["step"], ckpt["history"][-1]
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import pickle
import random
import tempfile
import warnings
import zipfile
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
    "checkpoint_bytes",
    "differences",
    "load_checkpoint",
    "rng_preserved",
    "rng_state",
    "set_rng_state",
]

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.csv"
#: The format written (2: with a checksum); version 1 files still load, with a warning.
CHECKPOINT_VERSION = 2
#: The first bytes of a checkpoint file; the SHA-256 of the rest follows, in hex, then a newline.
MAGIC = b"ZOO-CHECKPOINT sha256 "
_HEADER = len(MAGIC) + 64 + 1

#: Fields that may differ between a run and its resumption without changing the trajectory.
RESUME_FREE = frozenset(
    {
        "device",
        "progress",
        "out_dir",
        "resume",
        "force",
        "eval_every",
        "validate",
        "checkpoint_every",
    }
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


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask sets it, a race with other threads)
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temporary(path: Path) -> tuple[int, str]:
    # mkstemp creates 0600 files; the run's other outputs get open()'s 0666 less the umask.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    if hasattr(os, "fchmod"):
        os.fchmod(fd, 0o666 & ~_umask())
    return fd, tmp


def _write_atomically(write: Any, path: Path, mode: str) -> None:
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # e.g. a full disk: say where
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def checkpoint_bytes(obj: Any) -> bytes:
    """The bytes of a checkpoint file holding ``obj``: the header with the SHA-256 of the
    ``torch.save`` bytes that follow it."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getvalue()
    return MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def atomic_save(obj: Any, path: Path) -> None:
    """Write the checkpoint file of ``obj`` (:func:`checkpoint_bytes`) to a temporary file in
    the same folder, fsync, then rename over ``path``: a crash leaves either the old checkpoint
    or the new one, never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = checkpoint_bytes(obj)
    _write_atomically(lambda handle: handle.write(data), path, "wb")


def atomic_write_text(text: str, path: Path) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it over ``path``."""
    _write_atomically(lambda handle: handle.write(text), path, "w")


def _why(exc: BaseException) -> str:
    """What torch's refusal means, without its advice to load with ``weights_only=False``
    (which would run whatever code the file holds) and never an empty message."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in text:
        return (
            "it holds something other than tensors and plain values, or its pickled data is "
            "damaged (it is refused: loading it could run code)"
        )
    if "central directory" in text or isinstance(exc, (zipfile.BadZipFile, OSError, EOFError)):
        return "it is not a complete torch archive (truncated or overwritten)"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"torch cannot read it ({type(exc).__name__}{': ' + first if first else ''})"


def _payload(raw: bytes, path: Path) -> bytes:
    """The ``torch.save`` bytes of a checkpoint file, once its checksum is checked."""
    if raw.startswith(MAGIC):
        digest, body = raw[len(MAGIC) : _HEADER - 1], raw[_HEADER:]
        if len(raw) < _HEADER or raw[_HEADER - 1 : _HEADER] != b"\n":
            raise ValueError(f"{path} is not a valid zoo checkpoint: its header is cut short")
        if hashlib.sha256(body).hexdigest().encode() != digest:
            raise ValueError(
                f"{path} is not a valid zoo checkpoint: its SHA-256 checksum does not match its "
                "contents (the file was damaged or truncated after it was written)"
            )
        return body
    if raw.startswith(b"PK"):  # a zip: torch.save's format, as written before checksums
        return raw
    if raw and MAGIC.startswith(raw):
        raise ValueError(f"{path} is not a valid zoo checkpoint: its header is cut short")
    what = "it is empty" if not raw else "it does not start with a zoo checkpoint's header"
    raise ValueError(f"{path} is not a valid zoo checkpoint: {what}")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`zoo.train.fit`.

    :param path: the checkpoint file, or the folder holding ``checkpoint.pt``.
    :param map_location: where its tensors are loaded.
    :raises FileNotFoundError: if there is none.
    :raises ValueError: ``"<path> is not a valid zoo checkpoint: <why>"`` if the file is
        damaged (its checksum does not match), truncated, or not a zoo checkpoint.
    :warns UserWarning: for a checkpoint written before checksums (version 1), loaded unverified.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    raw = path.read_bytes()
    payload = _payload(raw, path)
    try:
        ckpt = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a valid zoo checkpoint: {_why(exc)}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != "zoo-checkpoint":
        raise ValueError(
            f"{path} is not a valid zoo checkpoint: it is a torch file, but not one zoo.fit wrote"
        )
    if ckpt.get("version") not in (1, CHECKPOINT_VERSION):
        raise ValueError(
            f"{path} is not a valid zoo checkpoint: its version {ckpt.get('version')!r} is not "
            f"one this zoo reads (1 or {CHECKPOINT_VERSION})"
        )
    if payload is raw:
        warnings.warn(
            f"{path} has no checksum (written before checkpoint version 2): it is loaded "
            "unverified; a run resumed from it writes checksummed checkpoints",
            UserWarning,
            stacklevel=2,
        )
    return ckpt


def differences(saved: Any, now: Any, name: str = "") -> list[str]:
    """``"name: checkpoint value → now value"`` for each leaf that differs between two nested
    dicts (a missing key counts as ``None``)."""
    if isinstance(saved, Mapping) and isinstance(now, Mapping):
        out = []
        for key in dict.fromkeys([*saved, *now]):
            out += differences(saved.get(key), now.get(key), f"{name}.{key}" if name else key)
        return out
    return [] if saved == now else [f"{name}: checkpoint {saved!r} → now {now!r}"]


def check_resumable(
    ckpt: dict,
    zm: ZooModel,
    cfg: TrainConfig,
    num_data: int,
    fingerprint: str | None = None,
    world_size: int = 1,
) -> None:
    """Refuse a checkpoint written by another model, other settings (those outside
    :data:`RESUME_FREE`), another training-set size or, given ``fingerprint``, other training
    data (its :func:`zoo.data.fingerprint`, e.g. a user's file changed since), or by another
    number of processes.

    ``num_epochs`` may grow: a resumed run then goes on to the new total (a finished run is
    extended).  The schedules are functions of the epoch: the KL warm-up counts absolute
    epochs and is unchanged; a decaying learning rate (``linear``, ``cosine``) is recomputed
    with the new total for the steps still to come, while the epochs already taken keep the
    rates they had, so the rate jumps up to where the longer schedule stands.  ``constant``
    gives exactly the run that asked for the larger total from the start.

    :raises ValueError: naming every mismatch, one ``name: checkpoint value → now value`` each.
    """
    mismatches = differences(ckpt["model"], zm.describe(), "model")
    # a field added after the checkpoint was written counts as its default
    defaults = dataclasses.asdict(TrainConfig())
    saved = {k: v for k, v in {**defaults, **ckpt["train_config"]}.items() if k not in RESUME_FREE}
    now = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RESUME_FREE}
    if now["num_epochs"] > saved["num_epochs"]:
        saved["num_epochs"] = now["num_epochs"]  # extending the run
    mismatches += differences(saved, now)
    if ckpt["num_data"] != num_data:
        mismatches.append(f"training set size: checkpoint {ckpt['num_data']} → now {num_data}")
    elif fingerprint is not None and ckpt.get("data_fingerprint", fingerprint) != fingerprint:
        mismatches.append(
            f"training data: checkpoint fingerprint {ckpt['data_fingerprint']} → now {fingerprint}"
        )
    if ckpt.get("world_size", 1) != world_size:
        mismatches.append(
            f"the checkpoint was written by {ckpt.get('world_size', 1)} process(es), this run "
            f"has {world_size}"
        )
    if mismatches:
        raise ValueError(
            "cannot resume: the checkpoint was written by a different run ("
            + "; ".join(mismatches)
            + "). Use the same settings (num_epochs may only grow), or a new out_dir."
        )
