"""Calibration, out-of-distribution and adversarial detection across the zoo's classifiers.

Three claims users of a Bayesian zoo want to check for themselves:

* MC predictions are better calibrated than a deterministic net's (dropout as ensembling:
  Gal & Ghahramani 2016);
* Bayesian uncertainty flags inputs unlike the training data;
* it also flags adversarial inputs (Li & Gal 2017, "Dropout inference in Bayesian neural
  networks with alpha-divergences", ICML; Smith & Gal 2018 for mutual information).

Every model has the same LeNet-300-100 architecture and is trained on the first
``--train-subset`` images of ``--data`` for ``--num-epochs`` epochs with Molchanov et al.'s
recipe scaled to that length (Adam 1e-3, batch 100, KL weight 0 until 2.5 % of training then
linear to 1 at 10 %, linear lr decay over the second half):

* the registered entries named by ``--models`` as ``entry:guide`` (by default the Gaussian-prior
  BNN with the mean-field guide, SparseVD, MC dropout and the per-unit variational dropout),
  trained by :func:`zoo.fit`;
* ``dense``: the deterministic net of :mod:`benchmarks.sparse_vd` (plain PyTorch, no dropout).

On the first ``--test-subset`` test images it reports, from ``--num-samples`` posterior draws
(:func:`zoo.evaluate.predictive_draws`; the deterministic net is one draw):

1. **calibration**: accuracy, NLL, Brier score and ECE (15 bins) of the predictive, and a
   reliability diagram;
2. **OOD detection**: AUROC and AUPR (out = positive) of each uncertainty score, ``1 - max p``,
   the predictive entropy, its aleatoric part and the mutual information, for the test images
   against the sklearn digits resized to 28x28, the test images turned by 90 degrees, inverted
   and uniform noise;
3. **adversarial detection**: FGSM and PGD (``--pgd-steps`` steps, random start) at each
   ``--eps`` against the posterior-mean net (:func:`zoo.evaluate.mean_net`, pruned for
   SparseVD); the accuracy under attack of that net and of the predictive, and the AUROC of each
   score at telling the clean test images from their attacked versions.

A deterministic net has no epistemic part: its aleatoric score is its entropy and its mutual
information is 0, so those cells are left empty.

Usage::

    python -m benchmarks.uncertainty                            # Fashion-MNIST, 10k images
    python -m benchmarks.uncertainty --models lenet300-normal:mc-dropout dense --eps 0.1
    python -m benchmarks.uncertainty --data mnist --data-dir ~/data/mnist --train-subset 60000
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from benchmarks import sparse_vd
from benchmarks.common import (
    add_run_arguments,
    header,
    load_data,
    markdown_table,
    torch_threads,
)
from zoo import TrainConfig, create_model, fit, load
from zoo.data import Dataset
from zoo.evaluate import (
    SHIFTS,
    classification_metrics,
    detection_auc,
    fgsm,
    mean_net,
    pgd,
    predictive_draws,
    reliability_diagram,
    resize_images,
    shifted_inputs,
    uncertainty_scores,
)
from zoo.spec import ZooModel
from zoo.train import resolve_device
from zoo.util import local_params

DEFAULT_MODELS = (
    "lenet300-normal:meanfield",
    "lenet300-loguniform:sparse-vd",
    "lenet300-normal:mc-dropout",
    "lenet300-loguniform:vd-unit",
    "dense",
)
LABELS = {
    "lenet300-normal:meanfield": "BNN Gaussian prior (mean-field)",
    "lenet300-loguniform:sparse-vd": "SparseVD",
    "lenet300-normal:mc-dropout": "MC dropout",
    "lenet300-loguniform:vd-unit": "variational dropout (per unit)",
    "dense": "deterministic",
}
SCORES = ("max_prob", "entropy", "aleatoric", "mutual_info")
ATTACKS = ("fgsm", "pgd")


def _label(spec: str) -> str:
    return LABELS.get(spec, spec)


class Classifier:
    """A trained model as the evaluation sees it: class-probability draws and a mean net."""

    def __init__(self, spec: str, net: nn.Module, zm: ZooModel | None, seconds: float) -> None:
        self.spec, self.net, self.zm, self.seconds = spec, net, zm, seconds

    @property
    def bayesian(self) -> bool:
        return self.zm is not None

    def draws(self, x: torch.Tensor, num_samples: int, batch: int) -> torch.Tensor:
        if self.zm is not None:
            return predictive_draws(self.zm, x, num_samples, batch)
        with torch.no_grad():
            logits = torch.cat([self.net(x[i : i + batch]) for i in range(0, len(x), batch)])
        return logits.softmax(-1).unsqueeze(0)

    def scores(self, draws: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = uncertainty_scores(draws)
        if not self.bayesian:
            del scores["aleatoric"], scores["mutual_info"]
        return scores


def train(spec: str, data: Dataset, args: argparse.Namespace) -> Classifier:
    """Train ``spec`` (``entry:guide`` or ``dense``) with the shared recipe."""
    recipe = sparse_vd.paper_recipe("lenet300", args.num_epochs, args.batch_size)
    if spec == "dense":
        result = sparse_vd.train_dense("lenet300", data, recipe, args.seed, args.progress)
        return Classifier(spec, result["model"], None, result["seconds"])
    entry, _, guide = spec.partition(":")
    zm = create_model(entry, data=data, guide=guide or None, seed=args.seed)
    if zm.info.task != "classification":
        raise ValueError(f"{entry} is not a classifier")
    config = TrainConfig(
        **recipe, device=str(data.device), seed=args.seed, progress=args.progress, eval_every=0
    )
    result = fit(zm, data, config=config)
    zm.eval()
    return Classifier(spec, mean_net(zm), zm, result.seconds)


def ood_sets(data: Dataset, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The out-of-distribution inputs: digits resized to the data's image size, and the test
    images rotated, inverted and replaced by noise."""
    x = data.x_test
    digits = load("digits", device=x.device)
    both = torch.cat([digits.x_train, digits.x_test])
    sets = {"digits (resized)": resize_images(both, tuple(x.shape[-2:]))}
    names = {"rotate90": "rotated 90°", "invert": "inverted", "noise": "uniform noise"}
    for kind in SHIFTS:
        sets[names[kind]] = shifted_inputs(x, kind, generator)
    return sets


def attack(
    model: Classifier, kind: str, x: torch.Tensor, y: torch.Tensor, eps: float, args, gen
) -> torch.Tensor:
    parts = []
    for i in range(0, len(x), args.eval_batch):
        xb, yb = x[i : i + args.eval_batch], y[i : i + args.eval_batch]
        if kind == "fgsm":
            parts.append(fgsm(model.net, xb, yb, eps))
        else:
            parts.append(pgd(model.net, xb, yb, eps, steps=args.pgd_steps, generator=gen))
    return torch.cat(parts)


def _accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    with torch.no_grad():
        pred = torch.cat([net(x[i : i + batch]).argmax(-1) for i in range(0, len(x), batch)])
    return (pred == y).double().mean().item()


def evaluate(model: Classifier, data: Dataset, args, reliability: dict) -> dict[str, list]:
    """The three tables' rows for one model."""
    gen = torch.Generator().manual_seed(args.seed)
    x, y = data.x_test, data.y_test
    s, b = args.num_samples, args.eval_batch
    started = time.perf_counter()
    clean = model.draws(x, s, b)
    reliability[_label(model.spec)] = clean.mean(0).cpu()
    metrics = classification_metrics(clean, y)
    clean_scores = model.scores(clean)
    calib = {
        "model": _label(model.spec),
        "draws": clean.shape[0],
        "mean_net_acc": _accuracy(model.net, x, y, b),
        **{k: metrics[k] for k in ("acc", "nll", "brier", "ece")},
        **{
            f"mean_{k}": clean_scores[k].mean().item() if k in clean_scores else math.nan
            for k in SCORES
        },
    }
    ood = []
    for name, x_out in ood_sets(data, gen).items():
        out_scores = model.scores(model.draws(x_out, s, b))
        for score in SCORES:
            auc = (
                detection_auc(clean_scores[score], out_scores[score])
                if score in clean_scores
                else {"auroc": math.nan, "aupr": math.nan}
            )
            ood.append({"model": _label(model.spec), "ood": name, "score": score, **auc})
    adv = []
    for kind in ATTACKS:
        for eps in args.eps:
            x_adv = attack(model, kind, x, y, eps, args, gen)
            draws = model.draws(x_adv, s, b)
            scores = model.scores(draws)
            row = {
                "model": _label(model.spec),
                "attack": kind,
                "eps": eps,
                "mean_net_acc": _accuracy(model.net, x_adv, y, b),
                "predictive_acc": (draws.mean(0).argmax(-1) == y).double().mean().item(),
            }
            for score in SCORES:
                row[f"auroc_{score}"] = (
                    detection_auc(clean_scores[score], scores[score])["auroc"]
                    if score in scores
                    else math.nan
                )
            adv.append(row)
    calib["eval_seconds"] = time.perf_counter() - started
    calib["train_seconds"] = model.seconds
    return {"calibration": [calib], "ood": ood, "adversarial": adv}


@local_params()
def main(argv: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Train the models, evaluate them and write ``uncertainty_{calibration,ood,adversarial}``
    CSVs, ``uncertainty.md`` and ``uncertainty_reliability.png``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.uncertainty", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(DEFAULT_MODELS),
        help="entry:guide of registered classifiers, or dense",
    )
    parser.add_argument("--data", default="fashion-mnist", help="an image classification set")
    parser.add_argument("--data-dir", default=None, help="folder with the IDX files")
    parser.add_argument("--num-epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--num-samples", type=int, default=20, help="posterior draws S")
    parser.add_argument("--test-subset", type=int, default=2000, help="first N test images")
    parser.add_argument("--eps", type=float, nargs="+", default=[0.01, 0.03, 0.1])
    parser.add_argument("--pgd-steps", type=int, default=10)
    parser.add_argument("--eval-batch", type=int, default=1000, help="examples per pass")
    add_run_arguments(parser)
    parser.set_defaults(train_subset=10000)
    args = parser.parse_args(argv)
    if min(args.num_epochs, args.num_samples, args.pgd_steps, args.eval_batch) < 1:
        parser.error("--num-epochs, --num-samples, --pgd-steps and --eval-batch must be >= 1")
    if any(e <= 0 for e in args.eps):
        parser.error("--eps values must be positive")
    for spec in args.models:
        if spec != "dense":
            entry, _, guide = spec.partition(":")
            create_model(entry, guide=guide or None)  # unknown names fail here, before training
    with torch_threads(args.threads):
        return _run(args, argv)


def _run(args: argparse.Namespace, argv: list[str] | None) -> dict[str, pd.DataFrame]:
    device = resolve_device(args.device)
    data = load_data(args.data, args.data_dir, device, args.train_subset)
    if data.info.image_shape is None or data.info.task != "classification":
        raise ValueError(f"{args.data} is not an image classification set")
    data = dataclasses.replace(
        data, x_test=data.x_test[: args.test_subset], y_test=data.y_test[: args.test_subset]
    )
    rows: dict[str, list] = {"calibration": [], "ood": [], "adversarial": []}
    reliability: dict[str, torch.Tensor] = {}
    for spec in args.models:
        model = train(spec, data, args)
        for key, new in evaluate(model, data, args, reliability).items():
            rows[key] += new
    tables = {k: pd.DataFrame(v) for k, v in rows.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reliability_diagram(
        reliability,
        data.y_test.cpu(),
        out / "uncertainty_reliability.png",
        title=f"{args.data}: reliability of the predictive",
    )
    md = header(
        "Uncertainty: calibration, OOD and adversarial detection",
        device,
        "benchmarks.uncertainty",
        argv,
    )
    md += _settings(args, data)
    md += "## Calibration (in-distribution test images)\n\n"
    md += markdown_table(tables["calibration"].round(4)) + "\n"
    md += "## OOD detection: AUROC per uncertainty score (out = positive)\n\n"
    md += markdown_table(_pivot(tables["ood"], "auroc")) + "\n"
    md += "## OOD detection: AUPR per uncertainty score\n\n"
    md += markdown_table(_pivot(tables["ood"], "aupr")) + "\n"
    md += "## Adversarial: accuracy under attack and AUROC clean vs attacked\n\n"
    md += markdown_table(tables["adversarial"].round(4)) + "\n"
    for key, table in tables.items():
        table.to_csv(out / f"uncertainty_{key}.csv", index=False)
    (out / "uncertainty.md").write_text(md)
    print(md)
    return tables


def _pivot(ood: pd.DataFrame, what: str) -> pd.DataFrame:
    table = ood.pivot_table(
        index=["model", "ood"], columns="score", values=what, sort=False, dropna=False
    )
    return table.reindex(columns=list(SCORES)).round(4).reset_index()


def _settings(args: argparse.Namespace, data: Dataset) -> str:
    return (
        "## Settings\n\n"
        f"- data: {args.data}, the first {data.num_train} training and {data.num_test} test "
        "images; every model LeNet-300-100\n"
        f"- training: {args.num_epochs} epochs, batch {args.batch_size}, Adam 1e-3, KL weight 0 "
        f"until {5 / 200 * args.num_epochs:g} epochs then linear to 1 at "
        f"{20 / 200 * args.num_epochs:g}, linear lr decay over the second half\n"
        f"- predictive: {args.num_samples} posterior draws per input (deterministic net: 1)\n"
        f"- attacks against the posterior-mean net, pixels kept in [0, 1]: FGSM and PGD "
        f"({args.pgd_steps} steps of 2.5 eps / {args.pgd_steps}, random start), eps "
        + ", ".join(f"{e:g}" for e in args.eps)
        + "\n"
        "- OOD sets: sklearn digits (1797, 8x8 resized bilinearly to 28x28), and the test "
        "images rotated by 90 degrees, inverted (1 - x) and replaced by uniform noise\n\n"
    )


if __name__ == "__main__":
    main()
