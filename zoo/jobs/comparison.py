"""``zoo compare``: train a set of models, add a NUTS reference, rank them with ArviZ.

The job runs in steps: check every argument and the output folder, load the data and build
every model (so that a model that does not fit fails before any training), train them, sample
NUTS (Hoffman & Gelman 2014) on one of them, rank them all with :func:`zoo.compare_models`
(PSIS-LOO, Vehtari, Gelman & Gabry 2017; stacking weights) and write the files at once.

Usage::

    from zoo.jobs import compare_main
    table = compare_main(["logreg:meanfield", "lenet300-normal:meanfield"], num_epochs=5,
                         out="runs/compare-small")
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

import zoo.data as zdata
from zoo.jobs.runs import checkpoint_data, from_checkpoint, load_data
from zoo.registry import create_model, get_spec
from zoo.spec import ZooModel
from zoo.train import describe_machine, fit, resolve_device
from zoo.util import local_params, markdown_table, unknown_choice

if TYPE_CHECKING:
    from zoo.compare import ComparisonResult, NUTSReference


#: ``zoo compare``'s default set: logistic regression, a BNN with a Gaussian prior under
#: mean-field and MC-dropout guides, and one with a log-uniform prior under sparse VD.
COMPARE_DEFAULT_MODELS = (
    "logreg:meanfield",
    "lenet300-normal:meanfield",
    "lenet300-loguniform:sparse-vd",
    "lenet300-normal:mc-dropout",
)
#: What ``zoo compare`` writes to ``--out``; an existing one is not overwritten without --force.
COMPARE_OUTPUTS = ("compare.csv", "compare.md", "compare_plot.png", "reliability.png")
#: The note of ``compare.md`` that states the table's order (:mod:`zoo.compare.trust`).
ORDER_NOTE = (
    "Order: rows whose trust is ok first, then the others; each group best first by the LOO "
    "corrected for the guide (elpd_loo_q) where it is finite and its khat_q <= 0.7, else by "
    "elpd_loo. A first "
    "row that is not ok means no row's ranking can be trusted."
)
#: Chains of the NUTS reference: its row scores ``NUTS_CHAINS * nuts_samples`` draws.
NUTS_CHAINS = 2


def _parse_model(text: str) -> tuple[str, str]:
    """``NAME[:GUIDE]`` as ``(name, guide)``, the entry's default guide when none is given."""
    name, _, guide = text.partition(":")
    spec = get_spec(name)  # unknown names raise with the closest matches
    guide = guide or spec.default_guide
    if guide not in spec.guides:
        raise unknown_choice(f"guide for {name!r}", guide, sorted(spec.guides))
    if spec.hooks.log_likelihood is None:
        raise ValueError(f"{name} has no pointwise log-likelihood and cannot be compared")
    return name, guide


def _write_all(out: Path, writers: dict[str, Any]) -> None:
    """Write every file under a temporary name first, then rename them all: a failure leaves
    the folder as it was."""
    out.mkdir(parents=True, exist_ok=True)
    temps = {name: out / f".tmp-{name}" for name in writers}  # keeps the suffix for matplotlib
    try:
        for name, write in writers.items():
            write(temps[name])
        for name, tmp in temps.items():
            tmp.replace(out / name)
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)


def _check_writable(out: Path) -> None:
    """``out`` is a folder a file can be written to: created if needed (and removed again, with
    any parents created for it, so a refused job leaves nothing), a probe file written and
    removed.  Raises ``ValueError`` naming the path otherwise."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is not a folder (it is a file)")
    created = [p for p in (out, *out.parents) if not p.exists()]
    probe = out / f".probe-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"--out {out} is not writable: {exc.strerror or exc}") from exc
    finally:
        for path in created:  # deepest first
            try:
                path.rmdir()
            except OSError:
                break


def _check_settings(
    num_samples: int, nuts_samples: int, nuts_warmup: int, out: Path, force: bool
) -> None:
    """The checks of :func:`compare_main` shared by trained models and saved runs."""
    if num_samples < 2:
        raise ValueError(f"--num-samples must be at least 2 (PSIS-LOO), got {num_samples}")
    if min(nuts_samples, nuts_warmup) < 1:
        raise ValueError("--nuts-samples and --nuts-warmup must be at least 1")
    _check_writable(out)
    existing = [name for name in COMPARE_OUTPUTS if (out / name).exists()]
    if existing and not force:
        raise ValueError(
            f"{out} already holds results ({', '.join(existing)}); pass --force to overwrite "
            "them or choose another --out"
        )


def _resolve_nuts(nuts: str | None, labels: Sequence[str]) -> str | None:
    """The model NUTS samples, ``"auto"`` resolved: logistic regression when it is compared."""
    names = [label.split(":")[0] for label in labels]
    if nuts == "auto":
        nuts = "logreg" if "logreg" in names else None
    if nuts is not None and nuts not in names:
        raise ValueError(
            f"the NUTS reference samples {nuts!r}, which is not among the models "
            f"{list(labels)}; add it or pass --no-nuts"
        )
    return nuts


def _check_compare(
    models: Sequence[str],
    num_samples: int,
    num_epochs: int | None,
    nuts: str | None,
    nuts_samples: int,
    nuts_warmup: int,
    out: Path,
    force: bool,
) -> tuple[list[tuple[str, str]], str | None]:
    """The checks of :func:`compare_main` that need no data: ``(name, guide)`` pairs and the
    model NUTS samples (``"auto"`` resolved)."""
    pairs = [_parse_model(m) for m in models]
    if not pairs:
        raise ValueError("--models needs at least one NAME[:GUIDE]")
    if len(set(pairs)) != len(pairs):
        raise ValueError(f"a model is listed twice in {list(models)}")
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"--num-epochs must be at least 1, got {num_epochs}")
    _check_settings(num_samples, nuts_samples, nuts_warmup, out, force)
    return pairs, _resolve_nuts(nuts, [f"{n}:{g}" for n, g in pairs])


def _load_runs(
    runs: Sequence[str],
    data: str | None,
    data_dir: str | None,
    options: Mapping[str, Any] | None,
) -> tuple[dict[str, ZooModel], zdata.Dataset]:
    """The trained models of the checkpoints ``runs`` (files or folders), labelled
    ``name:guide``, and the data they were all trained on: the first run's, reloaded as
    ``zoo evaluate`` does, unless ``data`` names other data."""
    if not runs:
        raise ValueError("--runs needs at least one checkpoint or run folder")
    fitted: dict[str, ZooModel] = {}
    first = None
    for run in runs:
        zm, ckpt = from_checkpoint(run)
        label = f"{zm.name}:{zm.guide_name}"
        if label in fitted:
            label = f"{label}@{Path(run).resolve().name}"
        if label in fitted:
            raise ValueError(f"{run} is listed twice")
        fitted[label] = zm
        first = first or (run, ckpt)
    run, ckpt = first
    if data is not None:
        dataset = load_data(data, data_dir, options=options)
    elif ckpt["data"]:
        dataset = checkpoint_data(run, ckpt["data"], data_dir, options or {})
    else:
        raise ValueError(f"{run} was trained on user tensors: pass --data to compare it")
    return fitted, dataset


def _compare_data(
    data: str, data_dir: str | None, num_train: int | None, options: Mapping[str, Any] | None
) -> zdata.Dataset:
    """The dataset of :func:`compare_main`, cut to its first ``num_train`` training examples."""
    dataset = load_data(data, data_dir, options=options)
    if num_train is not None:
        if not 1 <= num_train <= dataset.num_train:
            raise ValueError(f"--num-train must lie in [1, {dataset.num_train}], got {num_train}")
        y_train = None if dataset.y_train is None else dataset.y_train[:num_train]
        dataset = dataclasses.replace(dataset, x_train=dataset.x_train[:num_train], y_train=y_train)
    return dataset


def _check_models(
    models: Mapping[str, ZooModel],
    dataset: zdata.Dataset,
    nuts: str | None,
    num_samples: int,
    nuts_samples: int,
    fitted: bool,
) -> None:
    """Before any training or drawing: every model can be compared with the others on
    ``dataset`` (fitted on it when ``fitted``), NUTS can sample ``nuts``, and the pointwise
    log-likelihoods fit in memory."""
    from zoo.compare import check_comparable, check_memory, check_nuts_model

    check_comparable(models, dataset, fitted=fitted)
    num_draws = {label: num_samples for label in models}
    if nuts is not None:
        label = next(label for label in models if label.split(":")[0] == nuts)
        zm = models[label]
        y_two = None if zm.spec.observes == "x" else dataset.y_train[:2].to(zm.device)
        check_nuts_model(zm, dataset.x_train[:2].to(zm.device), y_two)
        num_draws[f"{nuts}:nuts"] = NUTS_CHAINS * nuts_samples
    # NUTS's row holds NUTS_CHAINS * --nuts-samples draws: name that flag too where it counts
    flag = "--num-samples" + (" (and --nuts-samples)" if nuts is not None else "")
    check_memory(num_draws, dataset.num_train, dataset.num_test, flag=flag)


def _build_models(
    pairs: Sequence[tuple[str, str]], dataset: zdata.Dataset, seed: int
) -> dict[str, ZooModel]:
    """Every model of the comparison, labelled ``name:guide``, built before any training so
    that a model that does not fit the data fails first."""
    return {
        f"{name}:{guide}": create_model(name, data=dataset, guide=guide, seed=seed)
        for name, guide in pairs
    }


def _train_models(
    built: Mapping[str, ZooModel],
    dataset: zdata.Dataset,
    device: torch.device,
    seed: int,
    num_epochs: int | None,
    progress: bool,
) -> dict[str, Any]:
    """Fit every built model in turn, printing one line each."""
    fitted: dict[str, Any] = {}
    for label, zm in built.items():
        overrides: dict[str, Any] = {
            "device": str(device),
            "seed": seed,
            "progress": progress,
            "eval_every": 0,
        }
        if num_epochs is not None:
            overrides["num_epochs"] = num_epochs
        result = fit(zm, dataset, **overrides)
        print(f"  {label}: {result.steps} steps in {result.seconds:.1f}s")
        fitted[label] = zm
    return fitted


def _nuts_step(
    fitted: Mapping[str, Any],
    nuts: str,
    dataset: zdata.Dataset,
    nuts_samples: int,
    nuts_warmup: int,
    seed: int,
    progress: bool,
) -> tuple[NUTSReference, str]:
    """NUTS on the model ``nuts``, its biases held at that model's first fit in ``fitted``.

    Returns the reference and its note for ``compare.md``.
    """
    from zoo.compare import nuts_reference

    label, base = next((lb, zm) for lb, zm in fitted.items() if lb.split(":")[0] == nuts)
    reference = nuts_reference(
        base,
        dataset,
        num_samples=nuts_samples,
        warmup=nuts_warmup,
        num_chains=NUTS_CHAINS,
        seed=seed,
        progress=progress,
    )
    print(
        f"  {nuts}:nuts: {reference.num_chains} chains x ({nuts_warmup} warm-up + "
        f"{nuts_samples} draws) in {reference.seconds:.1f}s; max R-hat "
        f"{reference.r_hat_max:.3f}, min bulk ESS {reference.ess_bulk_min:.0f}, "
        f"{reference.divergences} divergences; biases fixed at {base.guide_name}'s fit"
    )
    note = (
        f"NUTS ({nuts}): {reference.num_chains} chains of {nuts_warmup} warm-up and "
        f"{nuts_samples} draws, started at the guide's means, biases held at the {label} fit's "
        f"values; max R-hat {reference.r_hat_max:.3f}, min bulk ESS "
        f"{reference.ess_bulk_min:.0f}, {reference.divergences} divergences; fit_seconds is its "
        "sampling time."
    )
    return reference, note


def _compare_notes(
    result: ComparisonResult,
    dataset: zdata.Dataset,
    device: torch.device,
    num_samples: int,
    seconds: float,
    nuts_note: str | None,
) -> list[str]:
    """The notes under the table of ``compare.md``: the set-up, the columns, the order, the
    stacking weight given to untrusted rows, NUTS, warnings."""
    from zoo.compare.trust import untrusted_weight_note

    notes = [
        f"`zoo compare` on {dataset.name} ({dataset.num_train} train / {dataset.num_test} test), "
        f"{num_samples} posterior draws per guide, device {device}; {describe_machine(device)}; "
        f"whole job {seconds:.0f} s.",
        "elpd_loo, se, p_loo: PSIS-LOO on the training split (ArviZ, Vehtari et al. 2017); "
        "weight: stacking; trust: ok, or why the row's ranking cannot be trusted (q far from "
        "its posterior: vi_khat > 0.7; raw LOO of a q nothing checks; Pareto k > 0.7; a NUTS "
        "reference's R-hat > 1.01 or divergences); warnings: Pareto k counts, the VI "
        "diagnostic where its k > 0.7, and a NUTS reference's R-hat > 1.01 or divergences; "
        "test_elpd: sum_i log mean_s "
        "p(y_i | theta_s) on the test split; accuracy and ece (15 bins) of the posterior "
        "predictive mean; sparsity: weights with log alpha > 3; vi_khat: Pareto k of "
        "p(theta, D) / q(theta) (Yao et al. 2018), only for a proper prior and a guide with a "
        "density; elpd_loo_q, elpd_loo_q_se, khat_q: PSIS-LOO of the posterior from q's draws "
        "weighted by those ratios (Magnusson et al. 2019), where vi_khat is defined, and the "
        "largest Pareto k of its per-point ratios (> 0.7: not to be trusted).",
    ]
    notes.append(ORDER_NOTE)
    weight_note = untrusted_weight_note(result.table)
    if weight_note is not None:
        notes.append(weight_note)
    if nuts_note is not None:
        notes.append(nuts_note)
    for label, msgs in result.messages.items():
        for msg in dict.fromkeys(msgs):
            notes.append(f"{label}: {msg}")
    for label, vi in result.vi.items():
        if isinstance(vi, str):
            notes.append(f"{label}: no vi_khat: {vi}")
    return notes


def _compare_writers(
    table: pd.DataFrame, result: ComparisonResult, notes: Sequence[str], dataset: zdata.Dataset
) -> dict[str, Callable[[Path], Any]]:
    """One writer per file of ``zoo compare``, keyed by its name in ``--out``."""
    from zoo.compare import plot_compare
    from zoo.evaluate import reliability_diagram

    writers: dict[str, Any] = {
        "compare.csv": lambda p: table.to_csv(p, index=False),
        "compare.md": lambda p: p.write_text(
            markdown_table(table) + "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
        ),
    }
    if len(table) >= 2:  # ArviZ's plot needs two models to compare
        writers["compare_plot.png"] = lambda p: plot_compare(result.comparison, p, "PSIS-LOO")
    if result.predictive and result.y_test is not None:
        writers["reliability.png"] = lambda p: reliability_diagram(
            result.predictive, result.y_test, p, title=f"Reliability on {dataset.name} (test)"
        )
    return writers


def _train_step(
    models: Sequence[str] | None,
    data: str | None,
    data_dir: str | None,
    data_options: Mapping[str, Any] | None,
    num_train: int | None,
    num_samples: int,
    num_epochs: int | None,
    dev: torch.device,
    seed: int,
    nuts: str | None,
    nuts_samples: int,
    nuts_warmup: int,
    out: Path,
    force: bool,
    progress: bool,
) -> tuple[dict[str, Any], zdata.Dataset, str | None]:
    """Check everything, load the data, build then train every model of ``models``."""
    models = COMPARE_DEFAULT_MODELS if models is None else models
    pairs, nuts = _check_compare(
        models, num_samples, num_epochs, nuts, nuts_samples, nuts_warmup, out, force
    )
    dataset = _compare_data(data or "digits", data_dir, num_train, data_options)
    built = _build_models(pairs, dataset, seed)
    _check_models(built, dataset, nuts, num_samples, nuts_samples, fitted=False)
    print(
        f"comparing {len(built)} models{' + NUTS' if nuts else ''} on {dataset.name} "
        f"({dataset.num_train} train / {dataset.num_test} test), {num_samples} posterior "
        f"draws each, on {dev}"
    )
    return _train_models(built, dataset, dev, seed, num_epochs, progress), dataset, nuts


@local_params()
def compare_main(
    models: Sequence[str] | None = None,
    data: str | None = None,
    data_dir: str | None = None,
    num_samples: int = 200,
    num_epochs: int | None = None,
    device: str = "auto",
    out: str | Path = "runs/compare",
    force: bool = False,
    seed: int = 0,
    nuts: str | None = "auto",
    nuts_samples: int = 250,
    nuts_warmup: int = 200,
    num_train: int | None = None,
    progress: bool = True,
    data_options: Mapping[str, Any] | None = None,
    runs: Sequence[str] | None = None,
) -> pd.DataFrame:
    """``zoo compare``: train ``models`` on ``data``, add a NUTS reference, rank them with ArviZ.

    ``models`` are registry names with guides (:data:`COMPARE_DEFAULT_MODELS` when neither they
    nor ``runs`` are given), trained here on ``data`` (``digits`` by default).  ``runs`` are
    trained models instead, checkpoints or the folders holding them (a user's nets from
    ``zoo train file.py:function`` among them), compared on the data they were trained on.

    ``nuts`` names the model NUTS samples, with the biases of that model's first fit in the
    list; ``"auto"`` picks ``logreg`` when it is compared, ``None`` skips NUTS.  ``data`` is a
    dataset's name or a ``.csv``/``.npz`` file, read with ``data_options`` (``target``,
    ``test_fraction``, ``split_seed``, ``task``; see :func:`zoo.jobs.load_data`).

    Everything is checked before any training (with ``runs``, before any draw): the model and
    guide names, the data, the counts, the output folder (created if needed, and a probe file
    written to it; it must not already hold results unless ``force``), that every model can be
    compared with the others (a pointwise log-likelihood, global posterior draws, the same
    observed variable; see :func:`zoo.compare.check_comparable`), that NUTS can sample its
    model, and that the pointwise log-likelihoods fit in the available memory
    (:func:`zoo.compare.check_memory`: a ``ValueError`` with the estimate otherwise).  Files
    are written only once everything is computed.  Returns the table.
    """
    # zoo.compare imports ArviZ: only this job pays for it, not `zoo list` or `zoo train`
    from zoo.compare import compare_models

    started = time.perf_counter()
    out = Path(out)
    dev = resolve_device(device)
    if runs is not None:
        if models is not None or num_epochs is not None or num_train is not None:
            raise ValueError(
                "--runs compares trained models: --models, --num-epochs and "
                "--num-train do not apply"
            )
        _check_settings(num_samples, nuts_samples, nuts_warmup, out, force)
        fitted, dataset = _load_runs(runs, data, data_dir, data_options)
        nuts = _resolve_nuts(nuts, list(fitted))
        for zm in fitted.values():
            zm.to(dev)
        _check_models(fitted, dataset, nuts, num_samples, nuts_samples, fitted=True)
        print(f"comparing {len(fitted)} trained models on {dataset.name}, on {dev}")
    else:
        fitted, dataset, nuts = _train_step(
            models,
            data,
            data_dir,
            data_options,
            num_train,
            num_samples,
            num_epochs,
            dev,
            seed,
            nuts,
            nuts_samples,
            nuts_warmup,
            out,
            force,
            progress,
        )
    nuts_note = None
    if nuts is not None:
        reference, nuts_note = _nuts_step(
            fitted, nuts, dataset, nuts_samples, nuts_warmup, seed, progress
        )
        fitted[f"{nuts}:nuts"] = reference
    result = compare_models(fitted, dataset, num_samples=num_samples, seed=seed, progress=progress)
    table = result.table.reset_index(drop=True)
    seconds = time.perf_counter() - started
    notes = _compare_notes(result, dataset, dev, num_samples, seconds, nuts_note)
    writers = _compare_writers(table, result, notes, dataset)
    _write_all(out, writers)
    for name in COMPARE_OUTPUTS:  # a forced rerun leaves no stale file of an earlier run
        if name not in writers:
            (out / name).unlink(missing_ok=True)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print("\n".join(notes[2:]))
    print(f"\nwrote {', '.join(str(out / n) for n in writers)} in {seconds:.0f} s")
    return table
