"""A run's output folder: who may write to it, and what a killed run left behind.

:func:`claim_out_dir` is what :class:`zoo.train.Trainer` does before it writes anything:

- it refuses a folder that already holds a run (``checkpoint.pt``, ``config.json`` or
  ``metrics.csv``) unless the run is resumed (``resume``) or replaced (``force``, which removes
  those three files so that nothing of the old run, its checkpoint least of all, is taken for
  the new one's);
- it holds a lock file, ``out_dir/.lock``, for the run's lifetime: created atomically
  (``O_CREAT | O_EXCL``) with the holder's pid and host, so a second run on the folder fails at
  once with a message naming the holder.  A lock whose process is dead on this host (a killed
  run) is stale: it is taken over with a :class:`StaleLockWarning`.  A lock from another host
  cannot be checked and is refused; its message says how to remove it;
- it removes the temporary files a killed run left (``.checkpoint.pt.<random>.tmp`` and those of
  ``metrics.csv`` and ``config.json``: only the trainer's own names, nothing else in the folder).

Usage::

    from zoo.train.rundir import claim_out_dir
    lock = claim_out_dir("runs/ppca", resume=False, force=False)
    try:
        ...                                    # write the run's files
    finally:
        lock.release()
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import socket
import warnings
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo import distributed as zdist
from zoo.train.checkpoint import CHECKPOINT_NAME, METRICS_NAME, atomic_write_text
from zoo.train.config import TrainConfig

__all__ = [
    "CONFIG_NAME",
    "LOCK_NAME",
    "RUN_FILES",
    "RunLock",
    "StaleLockWarning",
    "claim_for_ranks",
    "claim_out_dir",
    "clean_orphans",
    "existing_run",
    "write_config",
]

CONFIG_NAME = "config.json"
LOCK_NAME = ".lock"
#: The files that make a folder hold a run.
RUN_FILES = (CHECKPOINT_NAME, CONFIG_NAME, METRICS_NAME)
#: The temporary files of :func:`zoo.train.checkpoint.atomic_save` and ``atomic_write_text``
#: (``tempfile.mkstemp``'s random part is 8 letters, digits or underscores).
ORPHAN = re.compile(
    r"^\.(" + "|".join(re.escape(name) for name in RUN_FILES) + r")\.[A-Za-z0-9_]+\.tmp$"
)


class StaleLockWarning(UserWarning):
    """A run's lock was left by a process that is gone (a killed run); it was taken over."""


def existing_run(out_dir: Path) -> list[str]:
    """The files of :data:`RUN_FILES` that ``out_dir`` holds."""
    return [name for name in RUN_FILES if (out_dir / name).exists()]


def clean_orphans(out_dir: Path) -> list[Path]:
    """Remove the temporary files a killed run left in ``out_dir`` (only the trainer's own
    ``.checkpoint.pt.*.tmp``, ``.metrics.csv.*.tmp`` and ``.config.json.*.tmp``).

    :returns: the files removed.
    """
    removed = []
    for path in sorted(out_dir.iterdir()):
        if ORPHAN.match(path.name) and path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process, alive
        return True
    return True


class RunLock:
    """``out_dir/.lock``, held from :meth:`acquire` to :meth:`release`.

    :ivar path: the lock file.
    :ivar held: whether this process holds it.
    :ivar created_dir: whether :func:`claim_out_dir` created the folder (an empty one is
        removed again when the run's set-up fails).
    """

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK_NAME
        self.held = False
        self.created_dir = False  # whether claim_out_dir made the folder

    def _holder(self) -> dict | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(text)
            int(holder["pid"]), str(holder["host"])
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                f"{self.path} exists but does not name the run holding it ({text[:80]!r}); "
                "if no run is using the folder, remove it"
            ) from None
        return holder

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            json.dump({"pid": os.getpid(), "host": socket.gethostname()}, handle)
        return True

    def acquire(self) -> None:
        """Take the lock, or a stale one's place.

        :raises ValueError: if a live run (or one on another host) holds it.
        """
        for _ in range(3):  # a holder may release it between our two looks
            if self._create():
                self.held = True
                return
            holder = self._holder()
            if holder is None:
                continue
            pid, host = int(holder["pid"]), holder["host"]
            if host != socket.gethostname():
                raise ValueError(
                    f"{self.path.parent} is locked by process {pid} on host {host}: another "
                    f"run is using it. Use another out_dir, or remove {self.path} if that run "
                    "is gone"
                )
            if pid == os.getpid():
                raise ValueError(
                    f"{self.path.parent} is locked by this process: a Trainer on it is still "
                    "open (its run() has not ended; close() releases it)"
                )
            if _alive(pid):
                raise ValueError(
                    f"{self.path.parent} is locked by a running process (pid {pid} on {host}): "
                    "another run is using it. Wait for it to end, or use another out_dir"
                )
            warnings.warn(
                f"{self.path} was left by process {pid} on {host}, which is gone (a killed "
                "run); taking it over",
                StaleLockWarning,
                stacklevel=4,
            )
            # Two runs taking over the same stale lock at once could both get here; the
            # O_EXCL create below lets only one of them win.
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        raise ValueError(f"could not take the lock {self.path}: it keeps changing hands")

    def release(self) -> None:
        """Remove the lock if this process holds it (idempotent)."""
        if not self.held:
            return
        self.held = False
        with contextlib.suppress(FileNotFoundError, ValueError):
            holder = self._holder()
            if holder is not None and int(holder["pid"]) == os.getpid():
                self.path.unlink()

    def abandon(self) -> None:
        """Release the lock of a run whose set-up failed, and remove the folder if
        :func:`claim_out_dir` created it and it is still empty."""
        self.release()
        if self.created_dir:
            with contextlib.suppress(OSError):  # not empty: left as it is
                self.path.parent.rmdir()


def claim_out_dir(out_dir: str | os.PathLike, *, resume: bool, force: bool) -> RunLock:
    """Lock ``out_dir`` for a run, refuse it if it holds another run (unless ``resume`` or
    ``force``), remove the old run's files under ``force``, and the temporary files a killed
    run left behind.

    :returns: the held :class:`RunLock`; call its :meth:`~RunLock.release` when the run ends.
    :raises ValueError: if another run holds the lock, or the folder holds a run and neither
        ``resume`` nor ``force`` is given.
    """
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(out_dir)
    lock.acquire()
    lock.created_dir = created
    try:
        found = existing_run(out_dir)
        if found and not (resume or force):
            raise ValueError(
                f"{out_dir} already holds a run ({', '.join(found)}): resume it (resume=True, "
                "--resume), overwrite it (force=True, --force) or use another out_dir"
            )
        if force and not resume:
            for name in found:
                (out_dir / name).unlink()
        clean_orphans(out_dir)
    except BaseException:
        lock.release()
        raise
    return lock


def write_config(
    out_dir: Path, model: Mapping[str, Any], config: TrainConfig, source: Mapping[str, Any]
) -> None:
    """Write ``out_dir/config.json`` (atomically): the model's description, the training
    settings and the data's source."""
    text = json.dumps(
        {"model": model, "train": dataclasses.asdict(config), "data": source},
        indent=2,
        default=str,
    )
    atomic_write_text(text, out_dir / CONFIG_NAME)


def claim_for_ranks(
    out_dir: Path, config: TrainConfig, ctx: zdist.DistributedContext | None, owner: object
) -> RunLock | None:
    """:func:`claim_out_dir` for a run's ``out_dir`` from rank 0, the only rank that writes;
    under DDP every rank raises what rank 0 met, so that none waits for the others forever.
    The lock is released when ``owner`` (the trainer) is garbage-collected or at the
    interpreter's exit, if not before.

    :returns: rank 0's lock, ``None`` on the other ranks.
    """
    lock, problem = None, None
    if ctx is None or ctx.rank == 0:
        try:
            lock = claim_out_dir(out_dir, resume=config.resume, force=config.force)
        except Exception as exc:
            if ctx is None:
                raise
            problem = exc
    if ctx is not None:
        message = zdist.gather_objects(None if problem is None else str(problem))[0]
        if problem is not None:
            raise problem
        if message is not None:
            raise ValueError(f"rank 0 could not take {out_dir}: {message}")
    if lock is not None:
        weakref.finalize(owner, lock.release)
    return lock
