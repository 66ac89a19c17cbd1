"""`zoo compare` finds every fatal problem before the first training step (or, with --runs,
before the first draw): an --out it cannot write, models it cannot compare, too little memory."""

import os

import pytest

import zoo.compare.checks as checks
import zoo.compare.table as table_module
import zoo.jobs.comparison as comparison
from zoo.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

QUICK = ["--num-epochs", "1", "--num-samples", "20", "--num-train", "300", "--no-progress"]


@pytest.fixture
def no_training(monkeypatch):
    """Training or drawing fails the test: the refusals must come before either."""

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the refusal")

    monkeypatch.setattr(comparison, "fit", forbidden)
    monkeypatch.setattr(table_module, "pointwise_draws", forbidden)


def _compare(capsys, *args):
    status = main(["compare", *QUICK, *args])
    return status, capsys.readouterr().err


def test_an_out_under_a_file_is_refused_before_training(tmp_path, capsys, no_training):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    status, err = _compare(capsys, "--models", "logreg", "--out", str(blocker / "cmp"))
    assert status == 2
    assert "--out" in err and str(blocker / "cmp") in err and "not writable" in err
    status, err = _compare(capsys, "--models", "logreg", "--out", str(blocker))
    assert status == 2 and str(blocker) in err and "not a folder" in err


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root, which writes into a read-only folder regardless of its mode",
)
def test_a_read_only_out_is_refused_before_training(tmp_path, capsys, no_training):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        status, err = _compare(capsys, "--models", "logreg", "--out", str(locked / "cmp"))
    finally:
        locked.chmod(0o700)
    assert status == 2 and "not writable" in err


def test_a_new_out_is_not_left_behind_by_a_refusal(tmp_path, capsys, no_training):
    out = tmp_path / "a" / "b"
    status, err = _compare(capsys, "--models", "ppca", "--no-nuts", "--out", str(out))
    assert status == 2 and "no global latent" in err
    assert not (tmp_path / "a").exists()  # the probe's folders are removed again


@pytest.mark.parametrize(
    ("models", "message"),
    [
        (["ppca"], "no global latent"),  # a point estimate: every draw is the same
        (["ppca:amortized"], "no global latent"),
        (["logreg", "bpca"], "observe different things"),  # p(y | x) against p(x)
    ],
)
def test_models_that_cannot_be_compared_are_refused_before_training(
    tmp_path, capsys, no_training, models, message
):
    out = tmp_path / "cmp"
    status, err = _compare(capsys, "--models", *models, "--no-nuts", "--out", str(out))
    assert status == 2 and message in err
    assert not out.exists()


def test_too_many_draws_are_refused_before_training(tmp_path, capsys, monkeypatch, no_training):
    monkeypatch.setattr(checks, "available_memory", lambda: 100 * 2**20)  # 100 MiB
    out = str(tmp_path / "cmp")
    args = ["compare", "--models", "logreg", "--num-samples", "100000", "--out", out]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "needs about" in err and "100 MB available" in err and "--num-samples" in err
    assert "--nuts-samples" in err  # logreg brings the NUTS reference, whose draws count too


def test_saved_runs_are_checked_before_any_draw(tmp_path, capsys, no_training):
    run = tmp_path / "ppca-run"
    train = ["train", "ppca", "--num-epochs", "1", "--no-progress", "--no-plots"]
    assert main([*train, "--out", str(run)]) == 0
    capsys.readouterr()
    out = str(tmp_path / "cmp")
    assert main(["compare", "--runs", str(run), "--no-nuts", "--out", out]) == 2
    assert "no global latent" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["compare", "--runs", str(run), "--out", str(blocker / "cmp")]) == 2
    assert "not writable" in capsys.readouterr().err
