"""One model's run: ``zoo train``, ``zoo evaluate`` and ``zoo export`` (and ``zoo list``).

A run's folder holds the trainer's ``checkpoint.pt``, ``metrics.csv`` and ``config.json``, and
the ``evaluation.json``, plots and layer report written here.

Usage::

    from zoo.jobs import evaluate_job, from_checkpoint
    zm, ckpt = from_checkpoint("runs/ppca/checkpoint.pt")   # the model, trained state restored
    evaluate_job("runs/ppca/checkpoint.pt", out="runs/ppca-eval")
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import zoo.data as zdata
import zoo.distributed as zdist
from zoo.models.custom import is_net_reference
from zoo.registry import create_model, from_module, get_spec, list_models, model_from_description
from zoo.spec import ZooModel, resolve_elbo
from zoo.train import TrainConfig, fit, load_checkpoint, resolve_device
from zoo.util import local_params


def load_data(
    name: str,
    data_dir: str | None,
    kwargs: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> zdata.Dataset:
    """The dataset ``name`` (see :func:`zoo.data.list_datasets`) or the ``.csv``/``.npz`` file
    at ``name``, from ``data_dir`` when given.

    :param kwargs: the dataset's own options, such as a registry entry's ``dataset_kwargs``.
    :param options: the command line's file options (``target``, ``test_fraction``,
        ``split_seed``, ``task``), over ``kwargs``; :func:`zoo.data.load` refuses those that do
        not apply.
    """
    return zdata.load(name, data_dir=data_dir, **{**(kwargs or {}), **(options or {})})


def writable_folder(path: str | os.PathLike[str]) -> Path:
    """The folder ``path``, created if needed, once a probe file was written to it and removed:
    a read-only folder, or a parent that is a file, fails here, before any work, with an
    ``OSError`` that names the path (``zoo`` prints it as one line).

    Usage::

        out = writable_folder("runs/demo")
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".zoo-write-probe-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()
    return folder


def _flags(options: Mapping[str, Any]) -> str:
    return ", ".join(zdata.tabular.FILE_OPTIONS.get(k, k) for k in options)


def checkpoint_data(
    checkpoint: str, source: Mapping[str, Any], data_dir: str | None, options: Mapping[str, Any]
) -> zdata.Dataset:
    """Reload the data a checkpoint was trained on, from its recorded ``source``: a file must
    still be there, at its absolute path, with the recorded content fingerprint.

    :param data_dir: overrides the recorded one (IDX sets only).
    :param options: the file flags given; refused, since the checkpoint records its own.
    :raises ValueError: for flags given without ``--data``, or a file whose content changed.
    :raises FileNotFoundError: when the recorded file is gone.
    """
    if options:
        raise ValueError(
            f"{_flags(options)} {'applies' if len(options) == 1 else 'apply'} only with --data: "
            "without it, the checkpoint's own data "
            f"({source['name']}) is reloaded with the options recorded in {checkpoint}"
        )
    kwargs = dict(source.get("kwargs", {}))
    recorded_dir = kwargs.pop("data_dir", None)
    try:
        return load_data(source["name"], recorded_dir if data_dir is None else data_dir, kwargs)
    except FileNotFoundError as err:
        if not zdata.tabular.is_file_name(source["name"]):
            raise
        raise FileNotFoundError(
            f"{checkpoint} was trained on {source['name']}, which is gone ({err}); put it back "
            "or evaluate on other data with --data"
        ) from None


def check_same_data(checkpoint: str, ckpt: Mapping[str, Any], dataset: zdata.Dataset) -> None:
    """Refuse reloaded data whose training split is not the one the checkpoint was trained on
    (its recorded fingerprint): other IDX files put in the same folder, say.

    :raises ValueError: naming the data's source and both fingerprints.
    """
    recorded = ckpt.get("data_fingerprint")
    if recorded is None:  # written before checkpoints recorded it
        return
    supervised = ckpt["model"]["info"]["task"] != "unsupervised"
    now = zdata.fingerprint(dataset.x_train, dataset.y_train if supervised else None)
    if now != recorded:
        where = dataset.source.get("kwargs", {}).get("data_dir") or dataset.source.get("name")
        raise ValueError(
            f"{checkpoint} was trained on other data than {dataset.name} holds now ({where}): "
            f"training split fingerprint {recorded} recorded, {now} now; pass --data to "
            "evaluate on other data"
        )


def describe_file_data(dataset: zdata.Dataset) -> str | None:
    """One line on data read from a file: its path, the task (inferred or given), the classes
    when renumbered and the content's fingerprint; ``None`` for other data."""
    name = dataset.source.get("name", "")
    if not zdata.tabular.is_file_name(name):
        return None
    kwargs = dataset.source["kwargs"]
    line = f"{name}: {dataset.info.task}"
    values = dataset.extras.get("class_values")
    if values is not None and values != list(range(len(values))):
        line += ", classes 0.." + f"{len(values) - 1} are the target values {values}"
    elif values is not None:
        line += f", {len(values)} classes"
    if "split_seed" in kwargs:
        line += f", test split {kwargs['test_fraction']:g} (seed {kwargs['split_seed']})"
    return line + f", fingerprint {kwargs['fingerprint']}"


def print_metrics(metrics: dict[str, dict[str, float]]) -> None:
    """Print ``{split: {metric: value}}`` as one row per split, four decimals."""
    frame = pd.DataFrame(metrics).T
    print(frame.to_string(float_format=lambda v: f"{v:.4f}"))


def write_report(zm: ZooModel, out: Path) -> None:
    """Write and print the family's ``report`` table (a BNN's layers) as ``out/report.csv``;
    nothing for a family without one."""
    if zm.spec.hooks.report is None:
        return
    table = zm.spec.hooks.report(zm)
    table.to_csv(out / "report.csv", index=False)
    with pd.option_context("display.width", 200):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def from_checkpoint(path: str, **parts: Any) -> tuple[ZooModel, dict]:
    """Rebuild the model saved in the checkpoint at ``path`` (a file or the folder holding it).

    The model remembers the fingerprint of its training data, so :func:`zoo.compare_models`
    accepts it on the same data and refuses it on other data.  A user's net
    (:func:`zoo.from_module`) is rebuilt from the function its checkpoint names; the reference
    is imported, so evaluate only checkpoints whose code you trust.

    :param parts: ``net=``, ``prior=``, ``likelihood=`` of a user's net, where the checkpoint
        cannot name them (see :func:`zoo.registry.model_from_description`).
    :returns: the model, with its trained state, and the checkpoint's dictionary.
    :raises FileNotFoundError: when there is no checkpoint at ``path``.
    """
    ckpt = load_checkpoint(path)
    zm = model_from_description(ckpt["model"], **parts)
    zm.load_state_dict(ckpt["state"])
    if "data_fingerprint" in ckpt:  # written since zoo compare exists
        zm.fitted_on = {
            "fingerprint": ckpt["data_fingerprint"],
            "num_train": ckpt["num_data"],
            "source": ckpt["data"],
            "seconds": sum(row.get("seconds", 0.0) for row in ckpt["history"]),
        }
    return zm, ckpt


def list_job(family: str | None = None) -> int:
    """``zoo list``: print the registered models (of ``family`` only, when given).

    :returns: 0, or 1 when the family has no models.
    """
    rows = []
    for name in list_models(family):
        spec = get_spec(name)
        rows.append(
            {
                "model": name,
                "family": spec.family,
                "guides": ",".join(sorted(spec.guides)),
                "default guide": spec.default_guide,
                "elbo": spec.elbo,
                "dataset": spec.dataset,
                "description": spec.description,
            }
        )
    if not rows:
        print(f"no models in family {family!r}")
        return 1
    with pd.option_context("display.max_colwidth", 90, "display.width", 200):
        print(pd.DataFrame(rows).to_string(index=False))
    return 0


@local_params()
def train_job(
    name: str,
    guide: str,
    data: str,
    data_dir: str | None,
    model_cfg: Mapping[str, Any],
    train_cfg: TrainConfig,
    plots: bool = True,
    data_options: Mapping[str, Any] | None = None,
    train_from_data: Collection[str] = (),
) -> int:
    """``zoo train NAME``: train the registered model ``name``, or a user's net named by a
    reference (``file.py:function``, ``package.module:function``, see :func:`zoo.from_module`),
    and write its outputs.

    Under ``torchrun`` every rank trains; only rank 0 prints, evaluates and writes
    ``evaluation.json``, the family's plots and its report next to the trainer's checkpoint and
    ``metrics.csv``.

    :param guide: a guide of the entry.
    :param data: the dataset's name or a ``.csv``/``.npz`` file; the entry's
        ``dataset_kwargs`` apply to its own dataset.
    :param model_cfg: the model's options, fields of the entry's config dataclass; for a
        user's net :func:`zoo.from_module`'s keyword arguments (``prior``, ``likelihood``,
        ``layers``, ``name``, fields of :class:`zoo.models.custom.ModuleConfig`).
    :param train_cfg: the training options; its ``out_dir`` is the output folder.
    :param plots: write the family's PNGs.
    :param data_options: the file options (see :func:`load_data`).
    :param train_from_data: fields of ``train_cfg`` replaced by the model's training defaults
        for the data's size (:meth:`zoo.spec.ModelSpec.training_defaults`), once it is loaded:
        the flags a user did not give.
    :returns: 0.
    """
    if is_net_reference(name):  # a user's net: zoo.from_module with the options given
        dataset = load_data(data, data_dir, {}, data_options)
        options = dict(model_cfg)
        label = options.pop("name", None) or name.rpartition(":")[2]
        zm = from_module(
            name, data=dataset, guide=guide, name=label, seed=train_cfg.seed, **options
        )
    else:
        spec = get_spec(name)
        kwargs = dict(spec.dataset_kwargs) if data == spec.dataset else {}
        dataset = load_data(data, data_dir, kwargs, data_options)
        zm = create_model(name, data=dataset, guide=guide, seed=train_cfg.seed, **model_cfg)
    guide = zm.guide_name
    if train_from_data:  # e.g. a sparse-VD net on small data trains longer
        given = {k: v for k, v in vars(train_cfg).items() if k not in train_from_data}
        sized = zm.spec.training_defaults(zm.config, dataset.num_train, given)
        sized = {k: v for k, v in sized.items() if k in train_from_data}
        train_cfg = dataclasses.replace(train_cfg, **sized)
    # under torchrun only rank 0 reports and writes; the others train and leave
    main = not train_cfg.distributed or os.environ.get("RANK", "0") == "0"
    if main:  # the settings were checked as the model was built: nothing is made before
        writable_folder(train_cfg.out_dir)  # a read-only --out fails now, not after training
        print(
            f"training {name} (guide {guide}, elbo {resolve_elbo(zm, train_cfg)}) on "
            f"{dataset.name}: {dataset.num_train} train / {dataset.num_test} test examples"
        )
        if (line := describe_file_data(dataset)) is not None:
            print(line)
    try:
        result = fit(zm, dataset, config=train_cfg)
    finally:
        if train_cfg.distributed:
            zdist.finish()
    if not main:
        return 0
    metrics = {split: zm.evaluate(dataset, split) for split in ("train", "test")}
    out = Path(train_cfg.out_dir)
    (out / "evaluation.json").write_text(json.dumps(metrics, indent=2))
    if plots and zm.spec.hooks.plot is not None:
        for path in zm.spec.hooks.plot(zm, dataset, out):
            print(f"wrote {path}")
    print(
        f"{result.steps} steps in {result.seconds:.1f}s on {result.device}; "
        f"checkpoint {result.checkpoint}"
    )
    if result.collapsed:  # also warned (CollapseWarning); said again beside the metrics
        print(f"WARNING: {result.collapse}")
    print_metrics(metrics)
    write_report(zm, out)
    return 0


@local_params()
def evaluate_job(
    checkpoint: str,
    data: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    out: str | None = None,
    plots: bool = True,
    data_options: Mapping[str, Any] | None = None,
) -> int:
    """``zoo evaluate``: the metrics, plots and report of a checkpoint.

    :param data: the dataset or file to evaluate on; by default the one the checkpoint was
        trained on (see :func:`checkpoint_data`).
    :param out: the output folder; by default the checkpoint's.
    :param data_options: the file options, with ``data`` only (see :func:`load_data`).
    :returns: 0.
    :raises ValueError: for a model trained on user tensors and no ``data``, or a recorded file
        whose content has changed.
    """
    zm, ckpt = from_checkpoint(checkpoint)
    desc = ckpt["model"]
    if data is not None:
        dataset = load_data(data, data_dir, options=data_options)
    elif ckpt["data"]:
        dataset = checkpoint_data(checkpoint, ckpt["data"], data_dir, data_options or {})
        check_same_data(checkpoint, ckpt, dataset)
    else:
        raise ValueError("this checkpoint was trained on user tensors: pass --data to evaluate it")
    folder = writable_folder(out if out else Path(checkpoint).resolve().parent)
    zm.to(resolve_device(device)).eval()
    metrics = {split: zm.evaluate(dataset, split) for split in ("train", "test")}
    (folder / "evaluation.json").write_text(json.dumps(metrics, indent=2))
    if zm.spec.hooks.plot is not None and plots:
        for path in zm.spec.hooks.plot(zm, dataset, folder):
            print(f"wrote {path}")
    print(f"{desc['name']} (guide {desc['guide']}) after {ckpt['step']} steps, on {dataset.name}")
    print_metrics(metrics)
    write_report(zm, folder)
    return 0


@local_params()
def export_job(checkpoint: str, out: str, force: bool = False) -> int:
    """``zoo export``: write the deterministic network of a checkpoint as a state dict.

    The file is written under a temporary name, then renamed: a failure leaves ``out`` as it was.

    :returns: 0.
    :raises ValueError: when the family has no export, ``out`` is a folder, or ``out`` exists
        and not ``force``.
    :raises OSError: when ``out`` cannot be written (the path names where).
    """
    zm, _ = from_checkpoint(checkpoint)
    if zm.spec.hooks.export is None:
        raise ValueError(f"{zm.name} has no deterministic export")
    target = Path(out)
    if target.is_dir():  # --force overwrites a file, never a folder
        raise ValueError(f"--out {target} is a folder; give the path of the .pt file to write")
    if target.exists() and not force:
        raise ValueError(f"{target} exists; pass --force to overwrite it")
    writable_folder(target.parent)
    state = zm.spec.hooks.export(zm)
    tmp = target.with_name(target.name + ".tmp")
    try:
        torch.save(state, tmp)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)  # left only by a failure
    what = ""
    if zm.spec.hooks.report is not None:  # the weights the report's total row counts
        total = zm.spec.hooks.report(zm).iloc[-1]
        kept, weights = int(total["kept"]), int(total["weights"])
        # "total (Bayesian weights)" for sparse VD, "total (Linear/ConvNd weights)" for SBP
        counted = str(total["layer"]).removeprefix("total (").removesuffix(")")
        what = f", {kept}/{weights} {counted} kept ({weights / max(kept, 1):.1f}x)"
    print(f"wrote {target}: the state dict of {zm.name}'s deterministic network{what}")
    return 0
