"""``zoo demo``: the PPCA family against the closed form of Tipping & Bishop (1999),
"Probabilistic principal component analysis".

PPCA under its analytic and amortized guides and Bayesian PCA (ARD prior) are fitted by
stochastic variational inference; each fit's exact log-likelihood per example is set beside the
closed-form maximum-likelihood solution's with as many latent dimensions.

Usage::

    from zoo.jobs import demo
    table = demo(num_epochs=20, device="cpu", out="runs/demo")   # also demo.csv, demo.md, PNGs
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from zoo.jobs.runs import load_data, writable_folder
from zoo.registry import create_model
from zoo.train import fit
from zoo.util import local_params, markdown_table

#: What ``zoo demo`` writes to ``--out``; an existing one is not overwritten without ``force``.
DEMO_OUTPUTS = ("demo.csv", "demo.md", "ppca_latent.png", "bpca_latent.png", "bpca_ard.png")


@local_params()
def demo(
    data: str = "digits",
    data_dir: str | None = None,
    num_epochs: int | None = None,
    device: str = "auto",
    out: str | Path = "runs/demo",
    seed: int = 0,
    progress: bool = True,
    force: bool = False,
) -> pd.DataFrame:
    """Train the PPCA family on ``data`` and compare each fit with the closed-form ML solution.

    Returns the table that ``zoo demo`` prints; it is also written to ``out`` as CSV and
    Markdown, next to the latent-space PNGs.

    :param force: overwrite the outputs (:data:`DEMO_OUTPUTS`) of an earlier demo in ``out``.
    :raises ValueError: when ``out`` holds them already and not ``force``.
    :raises OSError: when ``out`` cannot be written, before any training.
    """
    from zoo.models.ppca import active_dimensions, ppca_closed_form

    out = Path(out)
    existing = [name for name in DEMO_OUTPUTS if (out / name).exists()]
    if existing and not force:
        raise ValueError(
            f"{out} already holds results ({', '.join(existing)}); pass --force to overwrite "
            "them, or choose another --out"
        )
    writable_folder(out)
    dataset = load_data(data, data_dir)
    rows = []
    for name, guide in (("ppca", "analytic"), ("ppca", "amortized"), ("bpca", "analytic")):
        zm = create_model(name, data=dataset, guide=guide, seed=seed)
        overrides = {"device": device, "seed": seed, "progress": progress, "eval_every": 0}
        if num_epochs is not None:
            overrides["num_epochs"] = num_epochs
        start = time.perf_counter()
        fit(zm, dataset, **overrides)
        seconds = time.perf_counter() - start
        zm.eval()
        train, test = zm.evaluate(dataset, "train"), zm.evaluate(dataset, "test")
        k = int(active_dimensions(zm).sum()) if zm.model.ard else zm.config.latent_dim
        closed = ppca_closed_form(dataset.x_train, k)
        cf_train = closed.log_likelihood(dataset.x_train).mean().item()
        cf_test = closed.log_likelihood(dataset.x_test).mean().item()
        rows.append(
            {
                "model": name,
                "guide": guide,
                "latent_dim": zm.config.latent_dim,
                "active_dims": k,
                "train_loglik": train["log_lik"],
                "closed_form_train_loglik": cf_train,
                "gap_nats": cf_train - train["log_lik"],
                "test_loglik": test["log_lik"],
                "closed_form_test_loglik": cf_test,
                "test_recon_mse": test["recon_mse"],
                "fit_seconds": seconds,
            }
        )
        if zm.spec.hooks.plot is not None:
            zm.spec.hooks.plot(zm, dataset, out)
    table = pd.DataFrame(rows)
    table.to_csv(out / "demo.csv", index=False)
    (out / "demo.md").write_text(
        f"PPCA family on {dataset.name} ({dataset.num_train} train / {dataset.num_test} test); "
        "log-likelihoods are exact, per example (Bayesian PCA: plug-in E_q[W]); the closed form "
        "is Tipping & Bishop's ML solution with the same number of dimensions; gap_nats is its "
        "train log-likelihood minus the fit's, per example.\n\n" + markdown_table(table)
    )
    return table


def demo_job(
    data: str = "digits",
    data_dir: str | None = None,
    num_epochs: int | None = None,
    device: str = "auto",
    out: str = "runs/demo",
    seed: int = 0,
    force: bool = False,
) -> int:
    """``zoo demo``: run :func:`demo` and print its table.

    :param force: overwrite an earlier demo's outputs in ``out``.
    :returns: 0.
    """
    table = demo(data, data_dir, num_epochs, device, out, seed, force=force)
    with pd.option_context("display.width", 200):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\nwrote {Path(out) / 'demo.csv'}, demo.md and the latent-space PNGs")
    return 0
