"""The `zoo` command, called in-process through main(argv)."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from zoo.cli import main
from zoo.train import load_checkpoint


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "ppca" in out and "bpca" in out and "analytic" in out


def test_train_help_lists_the_models_own_flags(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "ppca", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--latent-dim",
        "--ard",
        "--encoder-hidden",
        "--num-epochs",
        "--lr-schedule",
        "--kl-warmup-end",
        "--checkpoint-every",
        "--resume",
        "--data-dir",
        "--guide",
    ):
        assert flag in out
    assert "the number of latent dimensions" in out  # help text comes from the docstring


@pytest.mark.parametrize(
    "command",
    [
        ["--help"],
        ["list", "--help"],
        ["evaluate", "--help"],
        ["demo", "--help"],
        ["train", "--help"],
    ],
)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(command)
    assert exit_.value.code == 0
    assert "usage: zoo" in capsys.readouterr().out


def test_unknown_model_is_a_clear_error(capsys):
    assert main(["train", "ppcaa"]) == 2
    assert "Did you mean 'ppca'" in capsys.readouterr().err


def test_train_then_resume_then_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "bpca",
        "--data",
        "ppca-synthetic",
        "--latent-dim",
        "5",
        "--num-epochs",
        "3",
        "--batch-size",
        "200",
        "--no-progress",
        "--out",
        str(out),
        "--seed",
        "1",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "log_lik" in printed and "active_dims" in printed
    for name in (
        "checkpoint.pt",
        "metrics.csv",
        "config.json",
        "evaluation.json",
        "bpca_latent.png",
        "bpca_ard.png",
    ):
        assert (out / name).exists(), name
    ckpt = load_checkpoint(out)
    assert ckpt["step"] == 12 and ckpt["model"]["config"]["latent_dim"] == 5
    assert len(pd.read_csv(out / "metrics.csv")) == 3
    # resuming a finished run is a no-op; a changed setting is refused
    assert main([*args, "--resume"]) == 0
    assert load_checkpoint(out)["step"] == 12
    assert main([*args[:-2], "--seed", "2", "--resume"]) == 2
    assert "cannot resume" in capsys.readouterr().err

    eval_out = tmp_path / "eval"
    assert main(["evaluate", str(out / "checkpoint.pt"), "--out", str(eval_out)]) == 0
    evaluated = json.loads((eval_out / "evaluation.json").read_text())
    trained = json.loads((out / "evaluation.json").read_text())
    for split in ("train", "test"):
        assert evaluated[split] == pytest.approx(trained[split], rel=1e-6)


def test_evaluate_a_missing_checkpoint(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope.pt")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


def test_demo_writes_its_table(tmp_path, capsys):
    assert main(["demo", "--num-epochs", "2", "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "demo.csv")
    assert list(table["model"]) == ["ppca", "ppca", "bpca"]
    assert (table["closed_form_train_loglik"] >= table["train_loglik"] - 1e-3).all()
    assert (tmp_path / "demo.md").read_text().count("\n| ") >= 4
    assert (tmp_path / "ppca_latent.png").exists()


def test_python_dash_m_zoo_runs():
    done = subprocess.run(
        [sys.executable, "-m", "zoo", "list"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "ppca" in done.stdout


def test_bnn_train_writes_the_layer_report_and_export_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "lenet300-loguniform", "--data", "digits", "--hidden", "16"]
    args += ["--num-epochs", "1", "--no-progress", "--no-plots", "--out", str(out)]
    assert main(args) == 0
    report = pd.read_csv(out / "report.csv")
    assert list(report["layer"]) == ["net.1.weight", "net.3.weight", "total (Bayesian weights)"]
    assert report["weights"].iloc[-1] == 64 * 16 + 16 * 10
    # compression is |W| / |W != 0| of the same rows
    expected = report["weights"] / report["kept"].clip(lower=1)
    assert (report["compression"] - expected).abs().max() < 1e-9

    target = tmp_path / "pruned.pt"
    assert main(["export", str(out / "checkpoint.pt"), "--out", str(target)]) == 0
    state = __import__("torch").load(target)
    assert set(state) == {"1.weight", "1.bias", "3.weight", "3.bias"}
    kept = int(state["1.weight"].count_nonzero()) + int(state["3.weight"].count_nonzero())
    assert kept == report["kept"].iloc[-1]
    before = target.read_bytes()
    capsys.readouterr()
    assert main(["export", str(out / "checkpoint.pt"), "--out", str(target)]) == 2
    assert "--force" in capsys.readouterr().err
    assert target.read_bytes() == before  # nothing written half-way
    assert main(["export", str(out / "checkpoint.pt"), "--out", str(target), "--force"]) == 0


def test_inherited_model_options_have_their_help(capsys):
    """BNNConfig inherits WeightConfig's fields: their flags carry WeightConfig's :param text."""
    with pytest.raises(SystemExit):
        main(["train", "lenet300-loguniform", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--threshold THRESHOLD prune weights with ``log alpha`` above it" in help_text
    assert "--hidden [HIDDEN ...] hidden widths of ``mlp``" in help_text
