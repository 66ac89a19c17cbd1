"""Bad values and filesystem faults, through :func:`zoo.cli.main` and the Python API (issue 17).

Each is refused up front with a message naming the field, flag or path and the value:
non-finite floats and non-integer counts (item 4), ``--resume`` on a folder without a
checkpoint (5), an existing ``zoo demo`` output without ``--force`` and the ``--force`` flag of
``zoo train`` (7), and filesystem faults as one line ``zoo: error: PATH: ...`` with exit status
2 instead of a traceback (11).  Tiny runs: ``logreg`` on digits for one epoch.
"""

from __future__ import annotations

import math
import os
import pathlib

import pandas as pd
import pytest

import zoo.cli
from zoo.cli import main
from zoo.models.attention import AttentionConfig
from zoo.models.bnn import BNNConfig, WeightConfig
from zoo.models.custom import ModuleConfig
from zoo.models.ppca import PPCAConfig
from zoo.models.vae import VAEConfig
from zoo.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

QUICK = ["--num-epochs", "1", "--batch-size", "500", "--no-progress", "--no-plots"]
ROOT = os.geteuid() == 0
ROOT_REASON = "runs as root, where a chmod-protected file or folder stays readable and writable"


def train(out: pathlib.Path, *extra: str) -> int:
    return main(["train", "logreg", "--guide", "meanfield", *QUICK, "--out", str(out), *extra])


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("faults") / "run"
    assert train(out) == 0
    return out


# ------------------------------------------------------------------------------ item 4


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("lr", math.inf, "lr must be a finite number, got inf"),
        ("lr", math.nan, "lr must be a finite number, got nan"),
        ("kl_weight", math.nan, "kl_weight must be a finite number, got nan"),
        ("clip_norm", math.inf, "clip_norm must be a finite number, got inf"),
        ("lr_decay_start", math.nan, "lr_decay_start must be a finite number, got nan"),
        ("kl_warmup_end", math.inf, "kl_warmup_end must be a finite number, got inf"),
        ("num_epochs", 1.5, "num_epochs must be a whole number, got 1.5"),
        ("batch_size", True, "batch_size must be a whole number, got True"),
        ("num_particles", 2.5, "num_particles must be a whole number, got 2.5"),
        ("checkpoint_every", 0.5, "checkpoint_every must be a whole number, got 0.5"),
        ("eval_every", math.nan, "eval_every must be a whole number, got nan"),
        ("lr", "0.1", "lr must be a number, got '0.1'"),
    ],
)
def test_train_config_refuses_non_finite_and_non_integer_values(field, value, said):
    with pytest.raises(ValueError, match="^" + said.replace(".", r"\.")):
        TrainConfig(**{field: value})


def test_train_config_takes_a_whole_float_as_an_integer():
    cfg = TrainConfig(num_epochs=2.0, batch_size=64.0, clip_norm=None, checkpoint_every=None)
    assert cfg.num_epochs == 2 and type(cfg.num_epochs) is int
    assert cfg.batch_size == 64 and type(cfg.batch_size) is int


def test_fit_refuses_fractional_epochs_before_any_step():
    from zoo import create_model, fit
    from zoo.data import load

    data = load("digits")
    zm = create_model("logreg", data=data, guide="meanfield")
    with pytest.raises(ValueError, match=r"num_epochs must be a whole number, got 1\.5"):
        fit(zm, data, num_epochs=1.5, progress=False)


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda: WeightConfig(threshold=math.nan), "threshold must be a finite number, got nan"),
        (lambda: BNNConfig(prior_scale=math.inf), "prior_scale must be a finite number, got inf"),
        (lambda: BNNConfig(init_log_sigma2=-math.inf), "init_log_sigma2 must be a finite"),
        (lambda: BNNConfig(init_noise=math.nan), "init_noise must be a finite number, got nan"),
        (lambda: BNNConfig(hidden=(300, 1.5)), "hidden must hold whole numbers, got 1.5"),
        (lambda: BNNConfig(eval_samples=2.5), "eval_samples must be a whole number, got 2.5"),
        (lambda: BNNConfig(dropout=1.0), r"dropout must lie in \[0, 1\), got 1.0"),
        (lambda: BNNConfig(input_dropout=-0.1), r"input_dropout must lie in \[0, 1\), got -0.1"),
        (lambda: BNNConfig(max_dropout=1.5), r"max_dropout must lie in \(0, 1\), got 1.5"),
        (lambda: BNNConfig(init_dropout=0.0), r"init_dropout must lie in \(0, 1\), got 0.0"),
        (lambda: ModuleConfig(noise=math.inf), "noise must be a finite number, got inf"),
        (lambda: PPCAConfig(init_scale=math.nan), "init_scale must be a finite number, got nan"),
        (lambda: PPCAConfig(latent_dim=2.5), "latent_dim must be a whole number, got 2.5"),
        (lambda: VAEConfig(min_scale=math.inf), "min_scale must be a finite number, got inf"),
        (lambda: VAEConfig(eval_k=True), "eval_k must be a whole number, got True"),
        (lambda: AttentionConfig(grid=3.5), "grid must be a whole number, got 3.5"),
    ],
)
def test_model_configs_refuse_non_finite_and_non_integer_values(make, said):
    with pytest.raises(ValueError, match=said):
        make()


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--threshold", "nan", "threshold must be a finite number, got nan"),
        ("--kl-weight", "nan", "kl_weight must be a finite number, got nan"),
        ("--lr", "inf", "lr must be a finite number, got inf"),
    ],
)
def test_cli_refuses_non_finite_flags_before_training(tmp_path, capsys, flag, value, said):
    assert train(tmp_path / "out", flag, value) == 2
    assert said in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ item 5


def test_resume_without_a_checkpoint_is_refused(tmp_path, capsys):
    typo = tmp_path / "rnu"
    assert train(typo, "--resume") == 2
    line = one_error_line(capsys)
    assert str(typo) in line and "no checkpoint" in line
    assert not typo.exists()  # nothing started


def test_fit_resume_without_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"holds no checkpoint\.pt"):
        TrainConfig(out_dir=str(tmp_path / "empty"), resume=True)


# ------------------------------------------------------------------------------ item 7


def test_train_force_flag_reaches_the_config(tmp_path, monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(zoo.cli.jobs, "train_job", lambda *a, **k: seen.append(a[5]) or 0)
    assert train(tmp_path / "a") == 0
    assert train(tmp_path / "a", "--force") == 0
    net = tmp_path / "mynet.py"
    net.write_text("import torch\n\ndef net(info):\n    return torch.nn.Linear(64, 10)\n")
    own = ["train", f"{net}:net", "--data", "digits", "--out", str(tmp_path / "b"), *QUICK]
    assert main([*own, "--force"]) == 0
    assert [cfg.force for cfg in seen] == [False, True, True]
    assert TrainConfig().force is False
    with pytest.raises(SystemExit):
        main(["train", "logreg", "--help"])
    assert "--force" in capsys.readouterr().out


def test_force_does_not_stop_a_resume(run, capsys):
    # force is no setting of the trajectory: a run resumes with it (and without it)
    assert train(run, "--resume", "--force") == 0
    assert "cannot resume" not in capsys.readouterr().err


def test_demo_refuses_an_existing_output_without_force(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "demo.csv").write_text("model\nold\n")
    args = ["demo", "--out", str(out), "--num-epochs", "1", "--device", "cpu"]
    assert main(args) == 2
    line = one_error_line(capsys)
    assert str(out) in line and "--force" in line
    assert (out / "demo.csv").read_text() == "model\nold\n"
    assert main([*args, "--force"]) == 0
    assert len(pd.read_csv(out / "demo.csv")) == 3


# ----------------------------------------------------------------------------- item 11


def test_train_out_under_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert train(tmp_path / "file" / "run") == 2
    assert str(tmp_path / "file") in one_error_line(capsys)


def test_evaluate_out_under_a_file(run, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "eval"
    assert main(["evaluate", str(run), "--out", str(out), "--no-plots"]) == 2
    assert str(tmp_path / "file") in one_error_line(capsys)


def test_export_force_onto_a_folder(run, tmp_path, capsys):
    folder = tmp_path / "net.pt"
    folder.mkdir()
    assert main(["export", str(run), "--out", str(folder), "--force"]) == 2
    line = one_error_line(capsys)
    assert str(folder) in line and "folder" in line
    assert folder.is_dir() and not list(tmp_path.glob("*.tmp"))


def test_demo_out_under_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["demo", "--out", str(tmp_path / "file" / "demo"), "--num-epochs", "1"]) == 2
    assert str(tmp_path / "file") in one_error_line(capsys)


@pytest.mark.skipif(ROOT, reason=ROOT_REASON)
def test_train_read_only_out(tmp_path, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        assert train(parent / "run") == 2
    finally:
        parent.chmod(0o700)
    assert str(parent / "run") in one_error_line(capsys)


@pytest.mark.skipif(ROOT, reason=ROOT_REASON)
def test_unreadable_csv_file(tmp_path, capsys):
    csv = tmp_path / "data.csv"
    pd.DataFrame({"a": [0.0, 1.0] * 10, "label": [0, 1] * 10}).to_csv(csv, index=False)
    csv.chmod(0)
    args = ["train", "logreg", "--data", str(csv), "--target", "label", *QUICK]
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    assert str(csv) in one_error_line(capsys)


def test_an_os_error_of_a_read_is_one_line_with_its_path(tmp_path, capsys, monkeypatch):
    # what an unreadable IDX or CSV file raises, also where the tests run as root
    csv = tmp_path / "data.csv"
    pd.DataFrame({"a": [0.0, 1.0] * 10, "label": [0, 1] * 10}).to_csv(csv, index=False)

    def unreadable(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(pd, "read_csv", unreadable)
    args = ["train", "logreg", "--data", str(csv), "--target", "label", *QUICK]
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    assert one_error_line(capsys) == f"zoo: error: {csv}: Permission denied"
