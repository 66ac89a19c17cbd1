"""The workflows the ``zoo`` command starts: list, train, evaluate, export, demo and compare.

:mod:`zoo.cli` parses the command line and calls one function here per subcommand; each takes
plain values (no ``argparse.Namespace``), prints what the command prints, writes its files and
returns the exit status.  :func:`demo` and :func:`compare_main` also return their tables, so
they can be run from Python.

* :mod:`zoo.jobs.runs` -- :func:`train_job` trains a registered model and writes its
  checkpoint, ``metrics.csv``, ``evaluation.json``, plots and layer report;
  :func:`evaluate_job` and :func:`export_job` read a checkpoint back (:func:`from_checkpoint`,
  and :func:`checkpoint_data` its data: a file checked against its recorded fingerprint);
  :func:`list_job` prints the registry.
* :mod:`zoo.jobs.ppca_demo` -- :func:`demo`: the PPCA family against the closed-form
  maximum-likelihood solution of Tipping & Bishop (1999), "Probabilistic principal component
  analysis".
* :mod:`zoo.jobs.comparison` -- :func:`compare_main`: train a set of models, add a NUTS
  reference (Hoffman & Gelman 2014) and rank them with ArviZ's PSIS-LOO (Vehtari, Gelman &
  Gabry 2017) and stacking weights.

Usage::

    from zoo.jobs import compare_main, demo, from_checkpoint
    table = demo(num_epochs=20, device="cpu", out="runs/demo")
    table = compare_main(["logreg:meanfield", "lenet300-normal:meanfield"], num_epochs=5)
    zm, ckpt = from_checkpoint("runs/ppca/checkpoint.pt")
"""

from zoo.jobs.comparison import COMPARE_DEFAULT_MODELS, COMPARE_OUTPUTS, compare_main
from zoo.jobs.ppca_demo import demo, demo_job
from zoo.jobs.runs import (
    checkpoint_data,
    evaluate_job,
    export_job,
    from_checkpoint,
    list_job,
    load_data,
    print_metrics,
    train_job,
    write_report,
)

__all__ = [
    "COMPARE_DEFAULT_MODELS",
    "COMPARE_OUTPUTS",
    "checkpoint_data",
    "compare_main",
    "demo",
    "demo_job",
    "evaluate_job",
    "export_job",
    "from_checkpoint",
    "list_job",
    "load_data",
    "print_metrics",
    "train_job",
    "write_report",
]
