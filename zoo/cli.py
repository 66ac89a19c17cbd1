"""The ``zoo`` command: ``zoo list | train | evaluate | export | compare | demo``.

Every model's flags come from its registry entry: the fields of its config dataclass and of
:class:`zoo.train.TrainConfig`, hyphenated (``--latent-dim``, ``--num-epochs``), with the
family's training defaults.  ``zoo train NAME --help`` lists them.  This module only parses the
command line; the workflows it starts live in :mod:`zoo.jobs`.

Usage::

    zoo list
    zoo train ppca --latent-dim 5 --num-epochs 50 --out runs/ppca
    zoo train ppca --out runs/ppca --resume        # continue an interrupted run
    zoo train ppca --out runs/ppca --force         # start over, overwriting that run
    zoo evaluate runs/ppca/checkpoint.pt
    zoo train logreg --data my.csv --target label --test-fraction 0.25 --out runs/mine
    zoo evaluate runs/mine          # reloads my.csv, refuses it if its content has changed
    zoo compare                                    # the main job: BNNs and NUTS on digits
    zoo demo                                       # the PPCA family on digits, one table
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import typing
from collections.abc import Sequence
from typing import Any

import zoo.data as zdata
import zoo.jobs as jobs
from zoo.likelihoods import LIKELIHOODS
from zoo.models import bnn, custom
from zoo.registry import get_spec, list_models
from zoo.spec import config_from_dict
from zoo.train import DivergenceError, TrainConfig

# train flags handled by hand: --out, --resume, --force
_TRAIN_SKIP = ("out_dir", "resume", "force")
#: stands for a training flag not given (:func:`_cmd_train`)
_UNSET = object()
_FORCE_HELP = "overwrite a run already in OUT (without it, and without --resume, it is refused)"


def _param_docs(cls: type) -> dict[str, str]:
    """``:param name: text`` entries of the docstrings of ``cls`` and its bases (a dataclass
    inherits fields, such as :class:`zoo.models.bnn.WeightConfig`'s), whitespace folded; the
    class's own text wins."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        doc = klass.__dict__.get("__doc__") or ""
        found = re.findall(r":param (\w+):(.*?)(?=\n\s*:param |\n\s*\n|\Z)", doc, flags=re.S)
        docs.update({name: " ".join(text.split()) for name, text in found})
    return docs


def _add_dataclass_flags(
    parser: argparse.ArgumentParser, default: Any, title: str, skip: Sequence[str] = ()
) -> list[str]:
    """One ``--hyphenated-flag`` per field of the dataclass instance ``default``."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(type(default))
    docs = _param_docs(type(default))
    names = []
    for f in dataclasses.fields(default):
        if f.name in skip:
            continue
        hint = hints[f.name]
        value = getattr(default, f.name)
        kwargs: dict[str, Any] = {
            "default": value,
            "dest": f.name,
            "help": docs.get(f.name, "") + " (default: %(default)s)",
        }
        args = typing.get_args(hint)
        optional = type(None) in args
        base = next((a for a in args if a is not type(None)), hint) if optional else hint
        origin = typing.get_origin(base)
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin is typing.Literal:
            kwargs["choices"] = list(typing.get_args(base))
        elif origin is tuple:
            kwargs["nargs"] = "*"
            kwargs["type"] = typing.get_args(base)[0]
        elif base in (int, float, str):
            kwargs["type"] = base
        else:
            raise TypeError(f"cannot make a flag for {f.name}: {hint}")
        if optional:
            # "none" on the command line stands for None
            inner = kwargs.pop("type", str)
            kwargs["type"] = lambda s, inner=inner: None if s.lower() == "none" else inner(s)
            kwargs["metavar"] = getattr(inner, "__name__", "VALUE").upper()
        group.add_argument("--" + f.name.replace("_", "-"), **kwargs)
        names.append(f.name)
    return names


def _data_flags(
    parser: argparse.ArgumentParser, default_data: str | None, files: bool = True
) -> None:
    """``--data`` and ``--data-dir``; with ``files``, ``--data`` also takes a .csv or .npz file
    and the file flags ``--target``, ``--test-fraction``, ``--split-seed`` and ``--task``
    come along (each refused where it does not apply: see :mod:`zoo.data.tabular`)."""
    group = parser.add_argument_group("data")
    names = ", ".join(zdata.list_datasets())
    group.add_argument(
        "--data",
        default=default_data,
        choices=None if files else zdata.list_datasets(),
        metavar="NAME|FILE" if files else None,
        help=f"a dataset ({names})"
        + (" or a .csv/.npz file" if files else "")
        + " (default: %(default)s)",
    )
    group.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the IDX files of fashion-mnist or mnist (else $ZOO_DATA and the "
        "usual places); an error with any other data",
    )
    if not files:
        return
    group.add_argument(
        "--target",
        default=None,
        metavar="COLUMN",
        help="the target column of a .csv file (required there; an error otherwise)",
    )
    group.add_argument(
        "--test-fraction",
        type=float,
        default=None,
        help="share of a file's rows held out for testing (default 0.2), or the test share of "
        "a dataset that takes one; an error for an .npz file holding x_test",
    )
    group.add_argument(
        "--split-seed",
        type=int,
        default=None,
        help="seed of a file's train/test split (default 0); an error for an .npz file holding "
        "x_test and for named datasets",
    )
    group.add_argument(
        "--task",
        default=None,
        choices=["classification", "regression"],
        help="a file's task (default: classification when the targets are whole numbers with "
        f"at most {zdata.tabular.MAX_INFERRED_CLASSES} distinct values, else regression)",
    )


def _data_options(args: argparse.Namespace) -> dict[str, Any]:
    """The file flags given on the command line, by their option name."""
    return {
        k: getattr(args, k)
        for k in ("target", "test_fraction", "split_seed", "task")
        if getattr(args, k, None) is not None
    }


def _train_parser(name: str) -> tuple[argparse.ArgumentParser, list[str], list[str]]:
    spec = get_spec(name)
    parser = argparse.ArgumentParser(
        prog=f"zoo train {name}",
        description=f"{spec.description}. Reference: {spec.reference}",
    )
    parser.add_argument(
        "--guide",
        default=spec.default_guide,
        choices=sorted(spec.guides),
        help="variational family (default: %(default)s)",
    )
    _data_flags(parser, spec.dataset)
    parser.add_argument(
        "--out",
        default=f"runs/{name}",
        help="output folder: checkpoint, metrics.csv, plots (default: %(default)s)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoint.pt with the same settings",
    )
    parser.add_argument("--force", action="store_true", help=_FORCE_HELP)
    parser.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    model_fields = _add_dataclass_flags(parser, spec.config, f"{name} model options")
    train_default = TrainConfig(**spec.training_defaults())
    train_fields = _add_dataclass_flags(parser, train_default, "training options", _TRAIN_SKIP)
    return parser, model_fields, train_fields


def _own_train_parser(ref: str) -> tuple[argparse.ArgumentParser, list[str], list[str]]:
    """The flags of ``zoo train file.py:function``: a user's net through :func:`zoo.from_module`."""
    parser = argparse.ArgumentParser(
        prog=f"zoo train {ref}",
        description="Train a user's network made Bayesian (zoo.from_module): the function "
        f"{ref} builds it (called with the data's DataInfo if it takes an argument). "
        "With the log-uniform prior the training flags not given follow the sparse-VD rule "
        "(the KL off for the first third of the epochs, ramped over the second; more than 30 "
        f"epochs below {custom.SMALL_DATA} training examples: "
        "zoo.models.custom.train_defaults_for_data) instead of the defaults shown. "
        f"Reference: {bnn.REFERENCE}",
    )
    parser.add_argument(
        "--guide",
        default=None,
        choices=sorted(bnn.GUIDES),
        help="variational family (default: sparse-vd for the log-uniform prior, meanfield for "
        "the normal one)",
    )
    parser.add_argument(
        "--likelihood",
        default=None,
        choices=sorted(LIKELIHOODS),
        help="default: categorical for classification data, normal for regression",
    )
    parser.add_argument(
        "--name", default=None, help="the model's name (default: the function's name)"
    )
    _data_flags(parser, None)
    label = ref.rpartition(":")[2]
    parser.add_argument(
        "--out", default=f"runs/{label}", help="output folder (default: %(default)s)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--force", action="store_true", help=_FORCE_HELP)
    parser.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    model_fields = _add_dataclass_flags(
        parser, custom.ModuleConfig(), "model options", ("net", "likelihood")
    )
    train_default = TrainConfig(**custom.TRAIN_DEFAULTS)
    train_fields = _add_dataclass_flags(parser, train_default, "training options", _TRAIN_SKIP)
    return parser, [*model_fields, "likelihood", "name"], train_fields


def _cmd_train(argv: list[str]) -> int:
    name = argv[0]
    if custom.is_net_reference(name):
        parser, model_fields, train_fields = _own_train_parser(name)
        args = parser.parse_args(argv[1:])
        if args.data is None:
            parser.error("--data is required for a user's net (a dataset name or a file)")
        model_cfg = {k: vars(args)[k] for k in model_fields if vars(args)[k] is not None}
        model_cfg["layers"] = list(model_cfg.get("layers") or ()) or None
        # The training flags not given take the defaults for the data's size, known once the
        # data are loaded (a sparse-VD net on small data): parse again to tell them apart.
        parser.set_defaults(**dict.fromkeys(train_fields, _UNSET))
        given = vars(parser.parse_args(argv[1:]))
        from_data = tuple(k for k in train_fields if given[k] is _UNSET)
        return _train(name, args, model_cfg, train_fields, from_data)
    parser, model_fields, train_fields = _train_parser(name)
    args = parser.parse_args(argv[1:])
    spec = get_spec(name)
    model_cfg = {k: vars(args)[k] for k in model_fields}
    if spec.hooks.train_defaults_for is not None:
        # Training defaults that depend on the model's options (the VAE's learning rate per
        # estimator): parse again with them as defaults, so flags given still win.
        config = config_from_dict(spec.config, model_cfg)
        parser.set_defaults(**spec.training_defaults(config))
        args = parser.parse_args(argv[1:])
    return _train(name, args, model_cfg, train_fields)


def _train(
    name: str,
    args: argparse.Namespace,
    model_cfg: dict[str, Any],
    train_fields: list[str],
    from_data: tuple[str, ...] = (),
) -> int:
    """The training run that ``zoo train NAME`` (a registry entry or a user's net) parsed;
    ``from_data``: the training fields left to the defaults for the data's size."""
    values = vars(args)
    train_cfg = TrainConfig(
        **{k: values[k] for k in train_fields},
        out_dir=args.out,
        resume=args.resume,
        force=args.force,
    )
    return jobs.train_job(
        name,
        args.guide,
        args.data,
        args.data_dir,
        model_cfg,
        train_cfg,
        plots=not args.no_plots,
        data_options=_data_options(args),
        train_from_data=from_data,
    )


def _list_parser(sub: Any) -> None:
    p = sub.add_parser("list", help="the registered models")
    p.add_argument("--family", default=None, help="only this family")


def _train_name_parser(sub: Any) -> None:
    # only `zoo train --help` and `zoo train -x` get here: main() hands `zoo train NAME ...`
    # to _train_parser(NAME), which knows NAME's own flags
    sub.add_parser(
        "train",
        help="train a registered model or your own net: zoo train NAME|FILE.py:FUNCTION [flags]",
        description="Train a registered model, or your own network: a reference "
        "file.py:function or package.module:function to a function building an nn.Module "
        "(see zoo.from_module). Models: "
        + ", ".join(list_models())
        + ". `zoo train NAME --help` lists NAME's flags.",
    ).add_argument("name", help="a name from `zoo list`, or file.py:function")


def _evaluate_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="metrics and plots of a checkpoint")
    p.add_argument("checkpoint", help="a checkpoint.pt (or the folder holding it)")
    # without --data: the checkpoint's own data, a file checked against its recorded fingerprint
    _data_flags(p, None)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", default=None, help="output folder (default: the checkpoint's)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNGs")


def _export_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="write the deterministic network of a checkpoint (pruned BNN) as a state dict",
    )
    p.add_argument("checkpoint", help="a checkpoint.pt (or the folder holding it)")
    p.add_argument("--out", required=True, help="the .pt file to write")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def _compare_parser(sub: Any) -> None:
    p = sub.add_parser(
        "compare",
        help="train a set of models and rank them with ArviZ (PSIS-LOO, stacking, NUTS)",
        description="Train registered models on one dataset (or load trained runs with --runs), "
        "add a NUTS reference, and print one table: PSIS-LOO (elpd_loo, se, p_loo), stacking "
        "weights, trust (ok, or why a row's ranking cannot be trusted), Pareto-k warnings, "
        "held-out elpd, accuracy, ECE, sparsity, fit time and the VI diagnostic; trusted rows "
        "first. Writes " + ", ".join(jobs.COMPARE_OUTPUTS) + " to --out.",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--models",
        nargs="+",
        default=None,
        metavar="NAME[:GUIDE]",
        help="registered models to train, each with a guide (default: "
        f"{' '.join(jobs.COMPARE_DEFAULT_MODELS)})",
    )
    which.add_argument(
        "--runs",
        nargs="+",
        default=None,
        metavar="RUN",
        help="trained models instead: checkpoints or run folders (of `zoo train`, your own nets "
        "included), compared on the data they were trained on",
    )
    _data_flags(p, None)
    p.add_argument(
        "--num-samples", type=int, default=200, help="posterior draws per guide (default: 200)"
    )
    p.add_argument(
        "--num-epochs", type=int, default=None, help="epochs per model (default: each model's own)"
    )
    p.add_argument(
        "--num-train", type=int, default=None, help="use the first N training examples only"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", default="runs/compare", help="output folder (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="overwrite results already in --out")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument(
        "--nuts",
        default="auto",
        metavar="NAME",
        help="the model NUTS samples as a reference, given the fit of its first guide "
        "(default: logreg when it is among --models)",
    )
    p.add_argument("--no-nuts", action="store_true", help="skip the NUTS reference")
    # 2 chains of 200 + 250 took 53 s on 2 cores, max R-hat 1.03; 300 + 300 took 71 s for the
    # same R-hat (the slowest direction is the softmax's unidentified shift, fixed by the prior)
    p.add_argument(
        "--nuts-samples", type=int, default=250, help="NUTS draws per chain (default: 250)"
    )
    p.add_argument(
        "--nuts-warmup", type=int, default=200, help="NUTS warm-up steps per chain (default: 200)"
    )
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars"
    )


def _demo_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="train the PPCA family on built-in data and print a table")
    _data_flags(p, "digits", files=False)
    p.add_argument(
        "--num-epochs", type=int, default=None, help="epochs per model (default: each model's own)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", default="runs/demo", help="output folder (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="overwrite results already in --out")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo", description="A model zoo for Bayesian deep learning on Pyro."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _list_parser,
        _train_name_parser,
        _evaluate_parser,
        _export_parser,
        _compare_parser,
        _demo_parser,
    ):
        add(sub)
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    """Run the job of a parsed subcommand (all but ``train NAME``); its exit status."""
    if args.command == "list":
        return jobs.list_job(args.family)
    if args.command == "evaluate":
        return jobs.evaluate_job(
            args.checkpoint,
            args.data,
            args.data_dir,
            args.device,
            args.out,
            not args.no_plots,
            data_options=_data_options(args),
        )
    if args.command == "export":
        return jobs.export_job(args.checkpoint, args.out, args.force)
    if args.command == "compare":
        jobs.compare_main(
            models=args.models,
            runs=args.runs,
            data=args.data,
            data_dir=args.data_dir,
            data_options=_data_options(args),
            num_samples=args.num_samples,
            num_epochs=args.num_epochs,
            device=args.device,
            out=args.out,
            force=args.force,
            seed=args.seed,
            nuts=None if args.no_nuts else args.nuts,
            nuts_samples=args.nuts_samples,
            nuts_warmup=args.nuts_warmup,
            num_train=args.num_train,
            progress=args.progress,
        )
        return 0
    if args.command == "demo":
        return jobs.demo_job(
            args.data, args.data_dir, args.num_epochs, args.device, args.out, args.seed, args.force
        )
    # `zoo train NAME` is handled by main(); this is `zoo train` with a flag but no name
    _parser().parse_args(["train", "--help"])
    return 2


def _error_text(exc: Exception) -> str:
    """One line for the user: an ``OSError`` (a read-only folder, a parent that is a file, a
    file that cannot be read) as ``PATH: reason``, anything else as its message."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        where = str(exc.filename)
        if exc.filename2 is not None:
            where += f" -> {exc.filename2}"
        return f"{where}: {exc.strerror}"
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zoo`` console script; returns the exit status."""
    import zoo.models  # noqa: F401  (registers the families)

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(argv) >= 2 and argv[0] == "train" and not argv[1].startswith("-"):
            return _cmd_train(argv[1:])
        return _dispatch(_parser().parse_args(argv))
    except DivergenceError as exc:
        print(f"zoo: {exc}", file=sys.stderr)
        return 3
    except (ValueError, OSError) as exc:
        print(f"zoo: error: {_error_text(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
