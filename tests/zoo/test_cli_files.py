"""The CLI on a user's files: ``zoo train``, ``zoo evaluate`` and ``zoo compare`` with
``--data FILE``, the fingerprint that guards ``zoo evaluate``, and the flags that do not apply.

Everything runs in-process through :func:`zoo.cli.main`, on small files written into
``tmp_path``, one epoch each.
"""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np
import pandas as pd
import pytest

from zoo.cli import main
from zoo.train import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

QUICK = ["--num-epochs", "1", "--no-progress", "--no-plots"]


def write_csv(path: pathlib.Path, n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 3))
    label = np.where(x[:, 0] + x[:, 1] > 0, 2, 7)  # two classes, not numbered 0 and 1
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": label})
    frame.to_csv(path, index=False)
    return frame


def test_train_then_evaluate_a_csv_and_refuse_it_once_changed(tmp_path, capsys):
    csv = tmp_path / "mine.csv"
    frame = write_csv(csv)
    out = tmp_path / "run"
    args = ["train", "logreg", "--data", str(csv), "--target", "label", "--test-fraction", "0.25"]
    assert main([*args, "--split-seed", "1", *QUICK, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "on mine.csv: 45 train / 15 test examples" in printed
    assert (
        "classification, classes 0..1 are the target values [2, 7], test split 0.25 (seed 1)"
        in printed
    )
    ckpt = load_checkpoint(out)
    source = ckpt["data"]
    assert source["name"] == str(csv.resolve())
    assert source["kwargs"]["target"] == "label" and source["kwargs"]["split_seed"] == 1
    assert ckpt["model"]["info"]["num_classes"] == 2

    # resuming a finished run on the same file is a no-op
    assert main([*args, "--split-seed", "1", *QUICK, "--out", str(out), "--resume"]) == 0
    # evaluate finds the file through the checkpoint and gets the same metrics
    eval_out = tmp_path / "eval"
    assert main(["evaluate", str(out), "--no-plots", "--out", str(eval_out)]) == 0
    evaluated = json.loads((eval_out / "evaluation.json").read_text())
    trained = json.loads((out / "evaluation.json").read_text())
    for split in ("train", "test"):  # the mc_ metrics draw weights: only the others are exact
        exact = {k: v for k, v in trained[split].items() if not k.startswith("mc_")}
        assert {k: evaluated[split][k] for k in exact} == pytest.approx(exact, rel=1e-6)

    # one changed cell: refused, naming the file and both fingerprints
    frame.loc[0, "a"] += 1.0
    frame.to_csv(csv, index=False)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--no-plots", "--out", str(eval_out)]) == 2
    err = capsys.readouterr().err
    assert f"{csv.resolve()} has changed" in err and source["kwargs"]["fingerprint"] in err
    assert "fingerprint is now" in err
    # nor does a run resume on the changed file
    assert main([*args, "--split-seed", "1", *QUICK, "--out", str(out), "--resume"]) == 2
    assert "cannot resume" in (err := capsys.readouterr().err) and "training data" in err
    # the user may still evaluate on the new content by naming it
    assert main(["evaluate", str(out), "--data", str(csv), "--target", "label", "--no-plots"]) == 0
    csv.unlink()
    capsys.readouterr()
    assert main(["evaluate", str(out), "--no-plots"]) == 2
    assert "which is gone" in capsys.readouterr().err


def test_train_a_regressor_on_an_npz_with_an_n_by_1_target(tmp_path, capsys):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 4))
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]))[:, None]  # shape (40, 1)
    npz = tmp_path / "reg.npz"
    np.savez(npz, x=x, y=y, x_test=x[:8], y_test=y[:8])
    out = tmp_path / "run"
    args = ["train", "mlp-regressor-normal", "--data", str(npz), "--hidden", "8"]
    assert main([*args, *QUICK, "--out", str(out)]) == 0
    assert "40 train / 8 test" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--no-plots", "--out", str(tmp_path / "e")]) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data", "digits", "--data-dir", "."], r"--data-dir\) does not apply to the dataset"),
        (["--data", "CSV", "--target", "label", "--data-dir", "."], "does not apply to a file"),
        (["--data", "digits", "--target", "label"], r"--target\) does not apply to the dataset"),
        (["--data", "digits", "--split-seed", "2"], r"--split-seed\) does not apply"),
        (["--data", "digits", "--task", "regression"], r"--task\) does not apply"),
        (["--data", "NPZ", "--target", "y"], "--target.*applies to CSV files only"),
        (["--data", "NPZ", "--test-fraction", "0.5"], "holds its own test split"),
        (["--data", "CSV"], r"needs target= \(--target COLUMN\)"),
        (["--data", "CSV", "--target", "lab"], "no column 'lab'; the columns are"),
        (["--data", "nope"], "or a path to a .csv or .npz file"),
    ],
    ids=[
        "data-dir-digits",
        "data-dir-csv",
        "target-digits",
        "split-seed-digits",
        "task-digits",
        "target-npz",
        "test-fraction-npz",
        "no-target",
        "wrong-target",
        "unknown",
    ],
)
def test_flags_that_do_not_apply_are_errors(tmp_path, capsys, extra, message):
    csv, npz = tmp_path / "f.csv", tmp_path / "f.npz"
    write_csv(csv)
    np.savez(npz, x=np.ones((4, 2)), y=np.arange(4.0), x_test=np.ones((2, 2)), y_test=np.ones(2))
    extra = [{"CSV": str(csv), "NPZ": str(npz)}.get(a, a) for a in extra]
    assert main(["train", "logreg", *extra, *QUICK, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error:")
    assert re.search(message, err), err
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_evaluate_refuses_file_flags_without_data(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "logreg", "--data", "digits", "--num-epochs", "1", "--batch-size", "512"]
    assert main([*args, "--no-progress", "--no-plots", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--target", "y", "--split-seed", "1"]) == 2
    assert "--target, --split-seed apply only with --data" in capsys.readouterr().err
    assert main(["evaluate", str(out), "--data-dir", str(tmp_path), "--no-plots"]) == 2
    assert "does not apply to the dataset 'digits'" in capsys.readouterr().err


def test_compare_on_a_csv(tmp_path, capsys):
    csv = tmp_path / "mine.csv"
    write_csv(csv)
    out = tmp_path / "cmp"
    args = ["compare", "--models", "logreg:meanfield", "logreg:mc-dropout", "--data", str(csv)]
    args += ["--target", "label", "--num-epochs", "1", "--num-samples", "10", "--no-nuts"]
    assert main([*args, "--no-progress", "--out", str(out)]) == 0
    table = pd.read_csv(out / "compare.csv")
    assert sorted(table["guide"]) == ["mc-dropout", "meanfield"]
    assert "`zoo compare` on mine.csv (48 train / 12 test)" in (out / "compare.md").read_text()


def test_help_describes_the_file_flags(capsys):
    with pytest.raises(SystemExit):
        main(["train", "logreg", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in (
        "--data NAME|FILE",
        "--target COLUMN",
        "--test-fraction",
        "--split-seed",
        "--task",
    ):
        assert flag in text
    assert "or a .csv/.npz file" in text


def test_every_model_takes_the_file_flags(capsys):
    """No config field of any registered model clashes with the data flags."""
    from zoo.registry import list_models

    for name in list_models():
        with pytest.raises(SystemExit) as exit_:
            main(["train", name, "--help"])
        assert exit_.value.code == 0, name
        assert "--split-seed" in capsys.readouterr().out, name
