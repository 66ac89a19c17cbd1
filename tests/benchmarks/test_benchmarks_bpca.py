"""Smoke test of ``benchmarks.bpca`` on tiny settings (one start per method, a few steps)."""

import datetime
import math

import pandas as pd
import pytest

from benchmarks.bpca import main

pytestmark = [pytest.mark.benchmark, pytest.mark.usefixtures("one_thread")]

TINY = (
    "--seeds 1 --init-scales 0.1 --plain-scales 0.1 --grad-scales 1.0 --grad-steps 3"
    " --digits-dims 3 --no-digits-varying --threads 1"
).split()


def test_tiny_run_writes_its_tables(tmp_path):
    argv = [*TINY, "--out", str(tmp_path)]
    tables = main(argv)
    md = (tmp_path / "bpca.md").read_text()
    assert datetime.date.today().isoformat() in md
    assert "python -m benchmarks.bpca " + " ".join(argv) in md
    synth = tables["synthetic"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "bpca.csv"), synth)
    assert len(synth) == 2 * 3  # two data sets x (vb + rotation, plain sweeps, gradient)
    vb = synth[synth["method"] == "vb + rotation"]
    # the VB fits find the 3 true dimensions, near the true subspace and noise
    assert (vb["active"] == 3).all() and vb["converged"].all()
    assert (vb["max_angle_deg"] < 3).all()
    assert synth["seconds"].map(math.isfinite).all()
    digits = pd.read_csv(tmp_path / "bpca_digits.csv")
    assert list(digits["latent_dim"]) == [3] and digits["converged"].all()
