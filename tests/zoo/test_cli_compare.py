"""`zoo compare` end to end on a small digits subset, and its refusals."""

import dataclasses

import pandas as pd
import pytest

from zoo.cli import main
from zoo.compare import COLUMNS, TRUST_OK
from zoo.compare.trust import ranking_elpd
from zoo.jobs import COMPARE_OUTPUTS

pytestmark = pytest.mark.usefixtures("one_thread")

QUICK = ["--num-epochs", "1", "--num-samples", "20", "--num-train", "300", "--no-progress"]


def test_compare_end_to_end_writes_the_table_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", *QUICK, "--nuts-samples", "15", "--nuts-warmup", "15", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "elpd_loo" in printed and "R-hat" in printed
    for name in COMPARE_OUTPUTS:
        assert (out / name).stat().st_size > 500, name
    table = pd.read_csv(out / "compare.csv")
    assert list(table.columns) == list(COLUMNS)
    assert sorted(zip(table["model"], table["guide"], strict=True)) == [
        ("lenet300-loguniform", "sparse-vd"),
        ("lenet300-normal", "mc-dropout"),
        ("lenet300-normal", "meanfield"),
        ("logreg", "meanfield"),
        ("logreg", "nuts"),
    ]
    # trusted rows first, then the others, each group best first; stacking weights sum to 1
    trusted = table["trust"].eq(TRUST_OK)
    assert trusted.tolist() == sorted(trusted, reverse=True)
    for _, group in table.groupby(trusted):
        assert ranking_elpd(group).is_monotonic_decreasing
    assert table["trust"].str.len().gt(0).all()
    assert table["weight"].sum() == pytest.approx(1.0, abs=1e-6)
    assert table["accuracy"].between(0, 1).all() and table["ece"].between(0, 1).all()
    assert (table["test_elpd"] < 0).all() and (table["p_loo"] > 0).all()
    # vi_khat exactly where it is defined: Normal prior with a mean-field guide
    defined = table["guide"].eq("meanfield")
    assert table.loc[defined, "vi_khat"].notna().all()
    assert table.loc[~defined, "vi_khat"].isna().all()
    # the guide-corrected LOO beside the raw one, on the same rows (nan for NUTS too)
    assert table.loc[defined, ["elpd_loo_q", "elpd_loo_q_se", "khat_q"]].notna().all().all()
    assert table.loc[~defined, "elpd_loo_q"].isna().all()
    assert table.loc[table["guide"] == "sparse-vd", "sparsity"].notna().all()
    md = (out / "compare.md").read_text()
    assert md.count("\n| ") == 5 and "improper" in md and "no density" in md
    assert "Order: rows whose trust is ok first" in md
    untrusted_weight = table.loc[~trusted, "weight"].sum()
    assert ("goes to rows whose ranking cannot be trusted" in md) == (untrusted_weight >= 0.005)

    before = {name: (out / name).read_bytes() for name in COMPARE_OUTPUTS}
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already holds results" in err and "--force" in err
    assert {name: (out / name).read_bytes() for name in COMPARE_OUTPUTS} == before
    forced = ["compare", *QUICK, "--models", "lenet300-normal", "--out", str(out), "--force"]
    assert main(forced) == 0
    # no logreg, so no NUTS reference by default; one model: no comparison plot, none stale
    assert list(pd.read_csv(out / "compare.csv")["guide"]) == ["meanfield"]
    assert not (out / "compare_plot.png").exists()
    assert not list(out.glob(".tmp-*"))


@pytest.mark.parametrize(
    ("models", "message"),
    [
        (["logre"], "Did you mean 'logreg'"),
        (["logreg:meanfeld"], "Did you mean 'meanfield'"),
        (["logreg", "logreg:meanfield"], "listed twice"),
    ],
)
def test_compare_refuses_bad_models_before_training(tmp_path, capsys, models, message):
    out = tmp_path / "cmp"
    assert main(["compare", *QUICK, "--models", *models, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # nothing written


def test_compare_refuses_bad_counts(tmp_path, capsys):
    out = str(tmp_path / "cmp")
    assert main(["compare", "--num-samples", "0", "--out", out]) == 2
    assert "at least 2" in capsys.readouterr().err
    assert main(["compare", "--models", "lenet300-normal", "--nuts", "logreg", "--out", out]) == 2
    assert "--no-nuts" in capsys.readouterr().err  # NUTS would sample logreg, not in the set
    sparse = ["--models", "lenet300-loguniform", "--nuts", "lenet300-loguniform"]
    assert main(["compare", *sparse, "--out", out]) == 2
    assert "improper" in capsys.readouterr().err  # refused before training


def test_compare_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--models", "--num-samples", "--device", "--out", "--force", "--no-nuts"):
        assert flag in out


def test_a_model_restored_from_its_checkpoint_can_be_compared(tmp_path):
    """The checkpoint keeps the training data's fingerprint, so compare accepts the restored
    model on the same data and refuses it on other data."""
    import zoo
    from zoo.compare import compare_models as compare
    from zoo.jobs import from_checkpoint

    out = tmp_path / "run"
    args = [
        "train",
        "logreg",
        "--num-epochs",
        "1",
        "--no-progress",
        "--no-plots",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    zm, _ = from_checkpoint(str(out / "checkpoint.pt"))
    digits = zoo.load("digits")
    result = compare([zm], digits, num_samples=10, vi=False)
    assert result.table["model"].tolist() == ["logreg"]
    fewer = dataclasses.replace(digits, x_train=digits.x_train[:100], y_train=digits.y_train[:100])
    with pytest.raises(ValueError, match="fitted on different data"):
        compare([zm], fewer, num_samples=10)
