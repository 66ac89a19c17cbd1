"""Smoke test of ``benchmarks.vae`` on tiny settings (digits, one epoch, a small MLP)."""

import datetime
import math

import pandas as pd
import pytest

from benchmarks.vae import LABELS, main

pytestmark = pytest.mark.benchmark

TINY = (
    "--data digits --entry vae-digits --hidden 16 --latent-dim 4 --num-epochs 2 --batch-size 50"
    " --iwae-k 8 --elbo-samples 2 --eval-subset 60 --final-k 32 --final-subset 60"
    " --var-draws 40 --var-warmup 20 --threads 1 --no-progress"
).split()


def test_tiny_run_writes_its_tables_and_the_estimators_agree(tmp_path):
    argv = [*TINY, "--out", str(tmp_path)]
    tables = main(argv)

    md = (tmp_path / "vae.md").read_text()
    assert datetime.date.today().isoformat() in md.split("## Settings")[0]
    assert "python -m benchmarks.vae " + " ".join(argv) in md
    assert "torch " in md and "pyro " in md
    for name in ("vae.csv", "vae_grad_variance.csv", "vae_final.csv"):
        assert (tmp_path / name).is_file(), name
    curves = tables["curves"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "vae.csv"), curves)
    assert list(curves["estimator"].unique()) == list(LABELS.values())
    assert set(curves["epoch"]) == {1, 2}
    assert (
        curves[["train_loss", "test_elbo", "test_iwae", "epoch_seconds"]]
        .map(math.isfinite)
        .all()
        .all()
    )

    final = tables["final"]
    # IWAE with k = 32 against a 2-sample ELBO, on the same 60 images: the bound is tighter
    assert (final["iwae_k32"] > final["test_elbo"]).all()

    variance = tables["variance"].set_index(["parameters", "estimator"])
    assert set(variance.index.get_level_values(0)) == {"initial", "reparam, epoch 2"}
    for point in ("initial", "reparam, epoch 2"):
        row = variance.loc[(point, LABELS["score"])]
        # the score function without a baseline: measured 10x-100x the reparameterized variance
        assert row["ratio_to_reparam"] > 2
        for estimator in ("score", "score-avg", "score-nn"):
            row = variance.loc[(point, LABELS[estimator])]
            # every estimator estimates the same gradient: the means differ by noise alone,
            # whose expected size the table states (the ratio is near 1 over many coordinates)
            assert row["distance_to_reparam_mean"] < 2 * row["expected_from_noise"]


def test_a_non_vae_entry_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        main(["--entry", "ppca", "--out", str(tmp_path)])
