"""Sparsity that buys speed: SBP's shrunk nets against dense, masked and torch.sparse ones.

Neklyudov et al. (2017), Table 1's format: for LeNet-300-100 and LeNet-5-Caffe the script

1. trains the dense baseline in plain PyTorch (:func:`benchmarks.sparse_vd.train_dense`) for
   ``--dense-epochs``, and continues it for ``--num-epochs`` more (the dense net with the same
   total training as the two pruned ones below);
2. fine-tunes it with sparse VD (the ``<net>-loguniform`` entry, ``sparse-vd`` guide, LRT) for
   ``--num-epochs`` and prunes weights with ``log alpha > 3``;
3. fine-tunes it with SBP (the ``<net>-sbp`` entry: noise per neuron, channel and first-layer
   input, :mod:`zoo.structured`) for ``--num-epochs``, prunes units with SNR < 1 and shrinks
   the net (:func:`zoo.models.structured.export_shrunk`), as the paper fine-tunes pretrained
   nets;

then reports the test error, the units kept per layer (SBP's ``input-hidden-...`` counts),
the compression ``|W| / |W kept|``, the multiply-adds per example, and the measured CPU
inference latency at batch 1, 64 and 1000 of five plain ``nn.Module``s: the dense net, the
masked dense nets (sparse VD's and SBP's pruned means at full size: zeros cost as much as any
weight), sparse VD with its ``Linear`` layers as ``torch.sparse`` CSR matrix products
(convolutions stay dense: PyTorch has no sparse convolution on the CPU), and SBP's shrunk net.
Latency: ``time.perf_counter`` around one forward under ``torch.inference_mode``, after a
warm-up, the variants interleaved in every repetition so that the machine's load hits them
alike; the median per variant.  Speed-ups are dense's median over the variant's.

Usage::

    python -m benchmarks.structured                                  # 10 + 10 epochs, both nets
    python -m benchmarks.structured --nets lenet300 --dense-epochs 200 --num-epochs 200
    python -m benchmarks.structured --latency-only --out benchmarks/results/structured
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import statistics
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from benchmarks.common import (
    add_run_arguments,
    header,
    load_data,
    markdown_table,
    torch_threads,
    write_results,
)
from benchmarks.sparse_vd import error_on_test, paper_recipe, train_dense, train_sparse_vd
from zoo import TrainConfig, create_model, fit
from zoo.models.bnn import export_pruned, layer_report
from zoo.models.structured import export_shrunk, masked_net, unit_report
from zoo.train import resolve_device
from zoo.util import local_params

NETS = ("lenet300", "lenet5")
#: Neklyudov et al. (2017), Table 1 (MNIST): SBP's CPU speed-up, error and kept units.
PAPER = {
    "lenet300": {
        "paper_net": "LeNet-500-300",
        "error": 1.55,
        "kept": "245-160-55",
        "cpu_x": 2.33,
        "flops_x": 11.23,
        "sparse_vd_cpu_x": 1.19,
    },
    "lenet5": {
        "paper_net": "LeNet-5",
        "error": 0.86,
        "kept": "3-18-284-283",
        "cpu_x": 5.41,
        "flops_x": 10.49,
        "sparse_vd_cpu_x": 1.48,
    },
}
VARIANTS = (
    "dense",
    "masked dense (sparse VD)",
    "sparse VD (CSR)",
    "masked dense (SBP)",
    "SBP shrunk",
)
BATCHES = (1, 64, 1000)


@contextlib.contextmanager
def _csr_is_beta() -> Iterator[None]:
    # torch warns that CSR support is in beta at every CSR tensor it builds or loads; we know
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        yield


class SparseLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` a ``torch.sparse`` CSR matrix (``torch.sparse.mm``)."""

    def __init__(self, layer: nn.Linear) -> None:
        super().__init__()
        with _csr_is_beta():
            self.weight = layer.weight.detach().to_sparse_csr()
        self.bias = None if layer.bias is None else layer.bias.detach()[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.sparse.mm(self.weight, x.t())
        return (out if self.bias is None else out + self.bias).t()


def sparse_net(net: nn.Sequential) -> nn.Sequential:
    """``net`` with every ``Linear`` layer a :class:`SparseLinear` (other layers as they are)."""
    return nn.Sequential(
        *(SparseLinear(m) if isinstance(m, nn.Linear) else copy.deepcopy(m) for m in net)
    ).eval()


@torch.no_grad()
def macs(net: nn.Module, x: torch.Tensor, nonzero: bool = False) -> int:
    """Multiply-adds per example of the ``Linear``/``Conv2d`` layers (``nonzero``: counting only
    the non-zero weights, the work a sparse kernel could skip)."""
    total = 0

    def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        nonlocal total
        w = module.weight
        weights = int((w != 0).sum()) if nonzero else w.numel()
        positions = out[0, 0].numel() if isinstance(module, nn.Conv2d) else 1
        total += weights * positions

    handles = [
        m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Linear | nn.Conv2d)
    ]
    try:
        net(x[:1])
    finally:
        for h in handles:
            h.remove()
    return total


@torch.no_grad()
def latency(
    nets: dict[str, nn.Module], x: torch.Tensor, batches=BATCHES, min_reps: int = 20
) -> pd.DataFrame:
    """Median ms per forward of each net at each batch size, the nets interleaved per rep:
    wall time (``time.perf_counter``, ``ms``) and the thread's CPU time (``time.thread_time``,
    ``cpu_ms``), which a shared machine's other processes inflate less."""
    rows = []
    for batch in batches:
        xb = x[:batch].contiguous()
        with torch.inference_mode():
            for net in nets.values():  # warm-up: allocator, kernels, caches
                for _ in range(3):
                    net(xb)
            reps = min_reps * max(1, round(100 / batch))  # short calls: more of them
            times: dict[str, list[float]] = {k: [] for k in nets}
            cpu: dict[str, list[float]] = {k: [] for k in nets}
            order = list(nets)
            for rep in range(reps):
                for name in order[rep % len(order) :] + order[: rep % len(order)]:
                    started, started_cpu = time.perf_counter(), time.thread_time()
                    nets[name](xb)
                    times[name].append(1000 * (time.perf_counter() - started))
                    cpu[name].append(1000 * (time.thread_time() - started_cpu))
        for name, t in times.items():
            median_cpu = statistics.median(cpu[name])
            rows.append(
                {
                    "variant": name,
                    "batch": batch,
                    "ms": statistics.median(t),
                    "cpu_ms": median_cpu,
                    "reps": reps,
                }
            )
    return pd.DataFrame(rows)


def units_kept(net: nn.Module) -> str:
    """The paper's unit counts of a plain net: every layer's outputs but the last, and the
    inputs of the first ``Linear`` layer (LeNet-300-100: pixels-h1-h2; LeNet-5:
    conv1-conv2-fc1 inputs-fc1 outputs)."""
    layers = [m for m in net.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    counts = []
    for i, m in enumerate(layers[:-1]):
        if isinstance(m, nn.Linear) and (i == 0 or not isinstance(layers[i - 1], nn.Linear)):
            counts.append(m.in_features)
        counts.append(m.weight.shape[0])
    return "-".join(map(str, counts))


def train_sbp(net: str, data, dense: nn.Module, args, out: Path):
    """SBP fine-tuned from the dense net: the entry's weights start at the dense ones."""
    zm = create_model(f"{net}-sbp", data=data, seed=args.seed, lr_scale=args.sbp_lr_scale)
    zm.model.net.load_state_dict(dense.state_dict())
    config = TrainConfig(
        num_epochs=args.num_epochs,
        batch_size=args.batch_size,
        lr=1e-3,
        kl_warmup_end=min(1.0, args.num_epochs / 10),
        device=str(data.device),
        seed=args.seed,
        progress=args.progress,
        eval_every=0,
        out_dir=str(out / "runs" / f"{net}-sbp"),
        force=True,
    )
    return zm, fit(zm, data, config=config)


def _train_all(net: str, data, args, out: Path) -> tuple[dict, dict, dict]:
    """Train the five variants of ``net``; returns (modules, rows' facts, reports)."""
    recipe = paper_recipe(net, args.dense_epochs, args.batch_size)
    dense = train_dense(net, data, recipe, args.seed, args.progress)
    more = paper_recipe(net, args.num_epochs, args.batch_size)
    longer = train_dense(
        net, data, more, args.seed + 1, args.progress, model=copy.deepcopy(dense["model"])
    )
    svd_zm, svd_fit = train_sparse_vd(net, data, more, args, dense["model"], out)
    sbp_zm, sbp_fit = train_sbp(net, data, dense["model"], args, out)
    nets = {
        "dense": dense["model"].eval(),
        "dense (continued)": longer["model"].eval(),
        "masked dense (sparse VD)": export_pruned(svd_zm),
        "masked dense (SBP)": masked_net(sbp_zm),
        "SBP shrunk": export_shrunk(sbp_zm),
    }
    nets["sparse VD (CSR)"] = sparse_net(nets["masked dense (sparse VD)"])
    facts = {
        "dense_seconds": dense["seconds"],
        "longer_seconds": longer["seconds"],
        "svd_seconds": svd_fit.seconds,
        "sbp_seconds": sbp_fit.seconds,
        "svd_compression": float(layer_report(svd_zm).iloc[-1]["compression"]),
        "sbp_compression": float(unit_report(sbp_zm).iloc[-1]["compression"]),
    }
    reports = {"sparse VD": layer_report(svd_zm), "SBP": unit_report(sbp_zm)}
    return nets, facts, reports


def _rows(net: str, nets: dict, facts: dict, data, args) -> list[dict]:
    x = data.x_test[:1]
    dense_macs = macs(nets["dense"], x)
    epochs = f"{args.dense_epochs} + {args.num_epochs}"
    spec = [
        ("dense", "dense", f"{args.dense_epochs}", 1.0, facts["dense_seconds"]),
        ("dense (continued)", "dense (continued)", epochs, 1.0, facts["longer_seconds"]),
        ("sparse VD", "masked dense (sparse VD)", epochs, facts["svd_compression"], None),
        ("SBP", "SBP shrunk", epochs, facts["sbp_compression"], None),
    ]
    rows = []
    for method, key, ep, compression, seconds in spec:
        nonzero = method == "sparse VD"
        work = macs(nets[key], x, nonzero=nonzero)
        rows.append(
            {
                "net": net,
                "method": method,
                "epochs": ep,
                "error_%": error_on_test(nets[key], data),
                "units_kept": "-" if method == "sparse VD" else units_kept(nets[key]),
                "compression": compression,
                "macs": work,
                "flops_reduction": dense_macs / work,
                "train_seconds": seconds,
            }
        )
    rows[2]["train_seconds"], rows[3]["train_seconds"] = facts["svd_seconds"], facts["sbp_seconds"]
    return rows


def _speed_rows(net: str, timing: pd.DataFrame) -> pd.DataFrame:
    wide = timing.pivot(index="variant", columns="batch", values="ms")
    cpu = timing.pivot(index="variant", columns="batch", values="cpu_ms")
    out = []
    for variant in VARIANTS:
        row = {"net": net, "variant": variant}
        for batch in wide.columns:
            row[f"ms@{batch}"] = wide.loc[variant, batch]
            row[f"x@{batch}"] = wide.loc["dense", batch] / wide.loc[variant, batch]
        for batch in wide.columns:
            row[f"cpu_x@{batch}"] = cpu.loc["dense", batch] / cpu.loc[variant, batch]
        out.append(row)
    return pd.DataFrame(out)


def _verdicts(table: pd.DataFrame, speed: pd.DataFrame) -> str:
    lines = ["## Targets (SBP's CPU speed-up; error <= dense with the same epochs + 1 point)", ""]
    for net, group in table.groupby("net", sort=False):
        paper = PAPER[net]
        longer = group[group["method"] == "dense (continued)"].iloc[0]
        sbp = group[group["method"] == "SBP"].iloc[0]
        gap = sbp["error_%"] - longer["error_%"]
        shrunk = speed[(speed["net"] == net) & (speed["variant"] == "SBP shrunk")].iloc[0]
        parts = []
        for batch in [c.removeprefix("x@") for c in shrunk.index if c.startswith("x@")]:
            x = shrunk[f"x@{batch}"]
            verdict = "met" if x >= paper["cpu_x"] else f"MISSED by {paper['cpu_x'] - x:.2f}x"
            parts.append(
                f"batch {batch}: {x:.2f}x {verdict} (CPU time: {shrunk[f'cpu_x@{batch}']:.2f}x)"
            )
        error = "met" if gap <= 1.0 else f"MISSED by {gap - 1.0:.2f} points"
        lines.append(
            f"- {net} (paper: {paper['paper_net']} {paper['cpu_x']}x): speed-up of the shrunk "
            f"SBP net vs dense, {'; '.join(parts)}; error {sbp['error_%']:.2f}% vs dense "
            f"{longer['error_%']:.2f}% ({gap:+.2f} points): {error}"
        )
    return "\n".join(lines) + "\n"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.structured", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--nets", nargs="+", choices=NETS, default=list(NETS))
    parser.add_argument("--data", default="fashion-mnist", help="fashion-mnist, mnist or digits")
    parser.add_argument("--data-dir", default=None, help="folder with the IDX files")
    parser.add_argument("--dense-epochs", type=int, default=10, help="the dense pretraining")
    parser.add_argument("--num-epochs", type=int, default=10, help="each fine-tuning's epochs")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument(
        "--sbp-lr-scale",
        type=float,
        default=10.0,
        help="how much faster SBP's noise parameters move than the weights (SBPGuide)",
    )
    parser.add_argument("--test-subset", type=int, default=None, help="first N test examples")
    parser.add_argument("--eval-every", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument(
        "--min-reps",
        type=int,
        default=20,
        help="timed forwards per variant at batch >= 100 (more for smaller batches)",
    )
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="time the nets a previous run saved under --out (models/) without training",
    )
    add_run_arguments(parser)
    parser.set_defaults(threads=1, out="benchmarks/results/structured")
    args = parser.parse_args(argv)
    if args.num_epochs < 1 or args.dense_epochs < 1:
        parser.error("--num-epochs and --dense-epochs must be at least 1")
    return args


@local_params()
def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Run the benchmark; write ``structured.csv``/``.md`` and the speed table under ``--out``."""
    args = _parse(argv)
    with torch_threads(args.threads):
        return _run(args, argv)


def _run(args: argparse.Namespace, argv: list[str] | None) -> pd.DataFrame:
    device = resolve_device(args.device)
    data = load_data(args.data, args.data_dir, device, args.train_subset)
    if args.test_subset is not None:
        cut = slice(0, args.test_subset)
        data = dataclasses.replace(data, x_test=data.x_test[cut], y_test=data.y_test[cut])
    out = Path(args.out)
    saved = out / "models"
    saved.mkdir(parents=True, exist_ok=True)
    rows, speeds, reports = [], [], []
    for net in args.nets:
        path = saved / f"{net}.pt"
        if args.latency_only:
            with _csr_is_beta():
                nets, facts = torch.load(path, weights_only=False)
        else:
            nets, facts, report = _train_all(net, data, args, out)
            torch.save((nets, facts), path)
            reports += [r.assign(net=net, method=k) for k, r in report.items()]
        rows += _rows(net, nets, facts, data, args)
        # inputs for the largest batch: the test images, cycled when there are fewer
        x = data.x_test.cpu()[torch.arange(max(args.batches)) % data.num_test]
        timing = latency({k: nets[k] for k in VARIANTS}, x, args.batches, args.min_reps)
        speeds.append(_speed_rows(net, timing))
    table, speed = pd.DataFrame(rows), pd.concat(speeds, ignore_index=True)
    md = header(
        "Sparsity that buys speed (Neklyudov et al. 2017, Table 1's format)",
        device,
        "benchmarks.structured",
        argv,
    )
    md += _notes(args) + markdown_table(table) + "\n"
    md += (
        f"## CPU inference latency ({args.threads} thread(s), median ms per forward)\n\n"
        "`ms@B`: wall time (`time.perf_counter`) at batch B; `x@B`: dense's over the "
        "variant's; `cpu_x@B`: the same ratio of the thread's CPU time (`time.thread_time`), "
        "which the machine's other processes inflate less.\n\n"
    )
    md += markdown_table(speed) + "\n" + _verdicts(table, speed)
    md += "\n## Paper (MNIST)\n\n"
    md += markdown_table(pd.DataFrame([{"net": k, **v} for k, v in PAPER.items()])) + "\n"
    for report in reports:
        net, method = report["net"].iloc[0], report["method"].iloc[0]
        md += f"\n## Per layer: {net}, {method}\n\n" + markdown_table(report) + "\n"
    stem = "structured_retimed" if args.latency_only else "structured"
    write_results(out, stem, table, md)
    speed.to_csv(out / f"{stem}_latency.csv", index=False)
    print(md)
    return table


def _notes(args: argparse.Namespace) -> str:
    subset = (
        "" if args.train_subset is None else f" on the first {args.train_subset} training images"
    )
    return (
        f"Budget{subset}: the dense net trains {args.dense_epochs} epochs; sparse VD and SBP each "
        f"fine-tune it for {args.num_epochs} more (SBP's paper fine-tunes pretrained nets), and "
        f"`dense (continued)` trains it {args.num_epochs} more epochs too: the baseline with "
        "the same total training.  Sparse VD uses the recipe of `benchmarks/sparse_vd.py` "
        "(KL warm-up, linear lr decay) shortened to these epochs; SBP: Adam 1e-3, KL weight "
        f"to 1 over the first tenth, its noise parameters {args.sbp_lr_scale:g}x faster than "
        "the weights (`lr_scale`).  `macs`: multiply-adds per example (sparse VD: non-zero "
        "weights only); `units_kept`: SBP's pixels-hidden-hidden (LeNet-300-100) or conv1 "
        "channels-conv2 channels-fc1 inputs-fc1 outputs (LeNet-5).  The CSR variant runs its "
        "Linear layers through `torch.sparse.mm`; LeNet-5's convolutions stay dense.\n\n"
    )


if __name__ == "__main__":
    main()
