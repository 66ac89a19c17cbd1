"""End-to-end :func:`zoo.fit` against a hand-written PyTorch loop of the same math and epochs.

What users run: a net made Bayesian with :func:`zoo.from_module` (mean-field Gaussian guide,
``N(0, 1)`` prior on the weights, deterministic biases, the local reparameterization, the
closed-form KL) and trained by ``zoo.fit(zm, data, num_epochs=E, batch_size=B, eval_every=0)``
with every other setting at its default (progress bar, Pyro validation, the KL warm-up of
:data:`zoo.models.custom.TRAIN_DEFAULTS`, Adam at 1e-3), no output folder.  The clock runs
around the whole ``fit`` call: set-up, every step, the end-of-run checks.

The hand-written loop, written here in plain PyTorch from the same parameters, computes

    loss = (N / B) * sum_batch CE(f(x_i; W), y_i) + beta * sum_layers KL(N(mu, s^2) || N(0, 1))

with ``s = softplus(rho)``, the LRT (``b = x mu^T + bias + sqrt(x^2 s^2^T + 1e-8) eps``), the
same linear KL warm-up over the first 5 epochs, a new permutation per epoch, Adam at 1e-3, and
reads the epoch's loss once per epoch (a typical loop checks nothing per step).

The peer, when installed, is bayesian-torch's ``LinearReparameterization`` (Krishnan et al.,
Intel Labs), in the same loop: it draws one weight sample per minibatch (no LRT), makes the
biases Bayesian too and returns each layer's KL averaged over its weights (``kl.mean()``), as
that library does; the loop uses it as returned, so its loss is not the ELBO's scale (the time
does not depend on it).  bayesian-torch is the benchmark-only extra ``bench`` of
``pyproject.toml``, installed with ``pip install --no-deps "bayesian-torch>=0.5"`` (its own
requirements would replace a CPU torch with a CUDA build); without it the peer column is left
out, with the reason in the results.

Nets: ``digits-mlp`` (64-100-100-10 on digits: 1437 training examples, 15 steps per epoch at
batch 100) and ``lenet300`` (784-300-100-10 on Fashion-MNIST, 600 steps per epoch; skipped with
the reason when the data are not on this machine).

Timing: for each net, ``--reps`` repetitions; in each, every side trains once from the same
initial parameters, in an order that rotates between repetitions.  Each repetition gives a
ratio to the hand-written run of the same repetition; the table reports medians and the range.

Usage::

    python -m benchmarks.fit_speed --threads 1
    python -m benchmarks.fit_speed --nets digits-mlp --reps 7 --note "idle machine"
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import header, load_data, markdown_table, torch_threads, write_results
from zoo import fit, from_module
from zoo.data import Dataset, uses_data_dir
from zoo.data.files import DEBIAN_FASHION_MNIST_DIR
from zoo.models.custom import TRAIN_DEFAULTS
from zoo.spec import ZooModel

__all__ = [
    "NETS",
    "HandWritten",
    "Peer",
    "build_zoo",
    "hand_written_fit",
    "main",
    "peer_available",
    "time_net",
    "zoo_fit",
]

#: net name -> (data set, hidden widths, default epochs)
NETS = {"digits-mlp": ("digits", (100, 100), 20), "lenet300": ("fashion-mnist", (300, 100), 1)}
_VAR_EPS = 1e-8
#: the KL warm-up of zoo.fit's defaults for a user's net, in epochs
_WARMUP = float(TRAIN_DEFAULTS["kl_warmup_end"])
_LR = float(TRAIN_DEFAULTS["lr"])


def peer_available() -> str | None:
    """``None`` when bayesian-torch imports, else why it cannot be used."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its torch.quantization imports warn on new torch
            import bayesian_torch.layers  # noqa: F401
    except ImportError as exc:
        return f"bayesian-torch is not installed ({exc}); pip install --no-deps bayesian-torch"
    return None


def _mlp(inputs: int, hidden: tuple[int, ...], outputs: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(inputs, width), nn.ReLU()]
        inputs = width
    return nn.Sequential(*layers, nn.Linear(inputs, outputs))


def build_zoo(data: Dataset, hidden: tuple[int, ...], seed: int) -> ZooModel:
    """The user's MLP made Bayesian: Gaussian prior, mean-field guide (the defaults' LRT)."""
    torch.manual_seed(seed)
    net = _mlp(data.info.input_dim, hidden, data.info.num_classes)
    return from_module(net, data=data, prior="normal", guide="meanfield", seed=seed)


class HandWritten(nn.Module):
    """The zoo model's math in plain PyTorch, from its initial parameters.

    Usage::

        hand = HandWritten(build_zoo(data, (100, 100), seed=0))
        loss = hand.neg_elbo(x, y, num_data=data.num_train, beta=1.0)
    """

    def __init__(self, zm: ZooModel) -> None:
        super().__init__()
        linears = [m for m in zm.model.net.modules() if isinstance(m, nn.Linear)]
        sites = list(zm.guide.sites)
        self.mu = nn.ParameterList(nn.Parameter(s.loc.detach().clone()) for s in sites)
        # the guide's unconstrained scale, softplus^-1(s), is what Adam moves
        self.rho = nn.ParameterList(
            nn.Parameter(s.scale_unconstrained.detach().clone()) for s in sites
        )
        self.bias = nn.ParameterList(nn.Parameter(m.bias.detach().clone()) for m in linears)

    def neg_elbo(
        self, x: torch.Tensor, y: torch.Tensor, num_data: int, beta: float
    ) -> torch.Tensor:
        """``(N / B) * sum CE + beta * KL`` of the minibatch ``(x, y)``, one LRT draw."""
        h = x.flatten(1)
        last = len(self.mu) - 1
        kl = 0.0
        for i, (mu, rho, bias) in enumerate(zip(self.mu, self.rho, self.bias, strict=True)):
            scale = F.softplus(rho)
            mean = F.linear(h, mu, bias)
            var = F.linear(h * h, scale * scale)
            h = mean + (var + _VAR_EPS).sqrt() * torch.randn_like(mean)
            h = h if i == last else F.relu(h)
            kl = kl + (0.5 * (scale * scale + mu * mu) - 0.5 - scale.log()).sum()
        nll = F.cross_entropy(h, y, reduction="sum")
        return num_data / x.shape[0] * nll + beta * kl


class Peer(nn.Module):
    """The same net from bayesian-torch's ``LinearReparameterization`` layers (prior
    ``N(0, 1)``, initial posterior scale 1e-3; its own random initial means).

    Usage::

        peer = Peer(build_zoo(data, (100, 100), seed=0), (100, 100))
    """

    def __init__(self, zm: ZooModel, hidden: tuple[int, ...]) -> None:
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from bayesian_torch.layers import LinearReparameterization
        widths = [zm.info.input_dim, *hidden, zm.info.num_classes]
        rho = math.log(math.expm1(1e-3))  # the zoo guide's initial scale, 1e-3
        self.layers = nn.ModuleList(
            LinearReparameterization(a, b, prior_variance=1.0, posterior_rho_init=rho)
            for a, b in itertools.pairwise(widths)
        )

    def neg_elbo(
        self, x: torch.Tensor, y: torch.Tensor, num_data: int, beta: float
    ) -> torch.Tensor:
        """The same objective with bayesian-torch's layers (one weight draw per minibatch)."""
        h, kl = x.flatten(1), 0.0
        for i, layer in enumerate(self.layers):
            h, k = layer(h)
            h = h if i == len(self.layers) - 1 else F.relu(h)
            kl = kl + k
        nll = F.cross_entropy(h, y, reduction="sum")
        return num_data / x.shape[0] * nll + beta * kl


def hand_written_fit(
    module: nn.Module, data: Dataset, epochs: int, batch: int, seed: int
) -> list[float]:
    """A plain PyTorch training loop: one permutation per epoch, minibatches by index, the
    linear KL warm-up, Adam; the epoch's mean loss per example read once per epoch.

    :returns: the loss per example of each epoch.
    """
    x, y, n = data.x_train, data.y_train, data.num_train
    optimizer = torch.optim.Adam(module.parameters(), lr=_LR)
    per_epoch = math.ceil(n / batch)
    gen = torch.Generator().manual_seed(seed)
    history, step = [], 0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen).to(x.device)
        total = torch.zeros((), device=x.device)
        for i in range(per_epoch):
            idx = perm[i * batch : (i + 1) * batch]
            beta = min(1.0, step / per_epoch / _WARMUP)
            optimizer.zero_grad(set_to_none=True)
            loss = module.neg_elbo(x.index_select(0, idx), y.index_select(0, idx), n, beta)
            loss.backward()
            optimizer.step()
            total += loss.detach()
            step += 1
        history.append(total.item() / per_epoch / n)
    return history


def zoo_fit(zm: ZooModel, data: Dataset, epochs: int, batch: int, seed: int) -> list[float]:
    """``zoo.fit`` with its defaults, no evaluation, no output folder."""
    result = fit(zm, data, num_epochs=epochs, batch_size=batch, eval_every=0, seed=seed)
    return result.history["loss"].tolist()


def _run_side(
    side: str, data: Dataset, hidden: tuple[int, ...], epochs: int, args: argparse.Namespace
) -> tuple[float, list[float]]:
    """Build ``side`` from the seed's initial parameters, then time its whole run."""
    zm = build_zoo(data, hidden, args.seed)
    torch.manual_seed(args.seed)
    module = None
    if side != "zoo":
        module = (HandWritten(zm) if side == "hand" else Peer(zm, hidden)).to(data.device)
    started = time.perf_counter()
    if module is None:
        history = zoo_fit(zm, data, epochs, args.batch, args.seed)
    else:
        history = hand_written_fit(module, data, epochs, args.batch, args.seed)
    return time.perf_counter() - started, history


def time_net(name: str, data: Dataset, args: argparse.Namespace, peer: bool) -> dict[str, Any]:
    """Median seconds per side and the per-repetition ratios to the hand-written loop."""
    hidden = NETS[name][1]
    epochs = args.epochs if args.epochs is not None else NETS[name][2]
    sides = ["zoo", "hand", *(["peer"] if peer else [])]
    for side in sides:  # an untimed one-epoch warm-up of every side (imports, caches)
        _run_side(side, data, hidden, 1, args)
    seconds: dict[str, list[float]] = {s: [] for s in sides}
    last: dict[str, list[float]] = {}
    for rep in range(args.reps):
        for side in sides[rep % len(sides) :] + sides[: rep % len(sides)]:
            took, last[side] = _run_side(side, data, hidden, epochs, args)
            seconds[side].append(took)
    row: dict[str, Any] = {"net": name, "epochs": epochs, "batch": args.batch}
    row["steps"] = epochs * math.ceil(data.num_train / args.batch)
    for side in sides:
        ratios = [a / b for a, b in zip(seconds[side], seconds["hand"], strict=True)]
        row[f"{side}_s"] = statistics.median(seconds[side])
        row[f"{side}_ms_per_step"] = 1000 * row[f"{side}_s"] / row["steps"]
        if side != "hand":
            row[f"{side}/hand"] = statistics.median(ratios)
            row[f"{side}/hand_min"], row[f"{side}/hand_max"] = min(ratios), max(ratios)
        row[f"{side}_final_loss"] = last[side][-1]
    return row


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS))
    parser.add_argument("--epochs", type=int, default=None, help="default: per net (20, 1)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--reps", type=int, default=5, help="repetitions, order rotating")
    parser.add_argument("--train-subset", type=int, default=None, help="first N examples")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-peer", dest="peer", action="store_false")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--note", default="", help="a line for the report (e.g. machine load)")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.batch < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("--reps, --batch and --epochs must be at least 1")
    return args


def _skip_reason(name: str, data_dir: str | None) -> str | None:
    source = NETS[name][0]
    if uses_data_dir(source) and data_dir is None and not DEBIAN_FASHION_MNIST_DIR.exists():
        return f"{source} is not on this machine ({DEBIAN_FASHION_MNIST_DIR}; or --data-dir)"
    return None


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Time every net's sides and write ``fit_speed.md`` and ``fit_speed.csv`` under ``--out``.

    :returns: one row per net measured.
    """
    args = _parse(argv)
    cpu = torch.device("cpu")
    peer_missing = peer_available() if args.peer else "--no-peer was given"
    rows, skipped = [], {}
    with torch_threads(args.threads):
        for name in args.nets:
            reason = _skip_reason(name, args.data_dir)
            if reason is not None:
                skipped[name] = reason
                print(f"{name}: skipped, {reason}")
                continue
            data = load_data(NETS[name][0], args.data_dir, cpu, args.train_subset)
            rows.append(time_net(name, data, args, peer_missing is None))
            print(f"{name}: zoo/hand {rows[-1]['zoo/hand']:.3f}")
        table = pd.DataFrame(rows)
        _report(table, args, argv, skipped, peer_missing)
    return table


def _report(
    table: pd.DataFrame,
    args: argparse.Namespace,
    argv: list[str] | None,
    skipped: dict[str, str],
    peer_missing: str | None,
) -> None:
    md = header("End-to-end fit against a hand-written loop", "cpu", "benchmarks.fit_speed", argv)
    md += (
        f"Per net: {args.reps} repetitions; in each, `zoo.fit` (defaults, `eval_every=0`, no "
        "output folder), the hand-written PyTorch loop of the same math and epochs"
        + (", and bayesian-torch's layers in that loop" if peer_missing is None else "")
        + ", each from the same initial parameters, in rotating order. Seconds: medians of "
        "whole runs (set-up included); ratios: medians of the per-repetition ratios to the "
        "hand-written run, with their range. Target (issue 19): zoo/hand <= 1.10 on the small "
        "net.\n\n"
    )
    if args.note:
        md += f"Note: {args.note}\n\n"
    md += markdown_table(table) + "\n" if len(table) else "No net was measured.\n"
    md += "\n## Target\n\n"
    small = table[table["net"] == "digits-mlp"] if len(table) else table
    for _, row in small.iterrows():
        verdict = "met" if row["zoo/hand"] <= 1.10 else "MISSED"
        md += f"- digits-mlp: zoo/hand {row['zoo/hand']:.3f} (target 1.10): {verdict}\n"
    if peer_missing is not None:
        md += f"- peer column left out: {peer_missing}\n"
    for name, why in skipped.items():
        md += f"- not measured: {name} ({why})\n"
    write_results(Path(args.out), "fit_speed", table, md)
    print(md)


if __name__ == "__main__":
    main()
