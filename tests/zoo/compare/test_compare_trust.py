"""The trust column and the table's order (zoo/compare/trust.py), on hand-made tables, and on a
real comparison of two guides on a digits subset."""

import math
import warnings

import pandas as pd
import pytest

from zoo.compare.trust import (
    CORRECTED_ELPD,
    TRUST_OK,
    rank_rows,
    ranking_elpd,
    trust_cell,
    trust_reasons,
    untrusted_weight_note,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _table(rows, corrected=None):
    """A hand-made comparison table: (label, elpd_loo, weight, trust) per row."""
    frame = pd.DataFrame(
        [{"elpd_loo": e, "weight": w, "trust": t} for _, e, w, t in rows],
        index=pd.Index([r[0] for r in rows], name="label"),
    )
    if corrected is not None:
        frame[CORRECTED_ELPD] = corrected
    return frame


def test_each_reason_and_ok():
    assert trust_cell(n_high_k=0, n_points=100, vi_khat=0.3) == TRUST_OK
    assert trust_cell(n_high_k=0, n_points=100, vi_khat=38.16) == "q far from posterior (vi k=38)"
    # no VI diagnostic and no correction: nothing checks q
    assert trust_cell(n_high_k=0, n_points=100) == "raw LOO of q (no correction)"
    assert trust_cell(n_high_k=0, n_points=100, corrected=True) == TRUST_OK
    # a correction rests on the same importance ratios: it does not rescue a far q
    assert trust_reasons(n_high_k=0, n_points=100, vi_khat=2.0, corrected=True) == [
        "q far from posterior (vi k=2)"
    ]
    assert trust_cell(n_high_k=6, n_points=1437, vi_khat=0.5) == "k>0.7 on 6 of 1437 points"
    # the threshold is k > 0.7 exactly (Yao et al. 2018)
    assert trust_cell(n_high_k=0, n_points=10, vi_khat=0.7) == TRUST_OK
    nuts = {"n_high_k": 0, "n_points": 50, "nuts": True}
    assert trust_cell(**nuts, r_hat=1.005) == TRUST_OK  # vi_khat does not apply to NUTS
    assert trust_cell(**nuts, r_hat=1.0312) == "R-hat 1.03"
    assert trust_cell(**nuts, r_hat=math.nan) == "R-hat undefined (one chain)"
    assert trust_cell(**nuts, r_hat=1.0, divergences=2) == "2 divergences"
    assert (
        trust_cell(n_high_k=3, n_points=9, vi_khat=9.7)
        == "q far from posterior (vi k=9.7); k>0.7 on 3 of 9 points"
    )


def test_trusted_rows_come_first_each_group_best_first():
    table = _table(
        [
            ("point-estimate", -16.6, 1.0, "q far from posterior (vi k=38)"),
            ("sparse", -179.7, 0.0, TRUST_OK),
            ("nuts", -242.2, 0.0, TRUST_OK),
            ("dropout", -712.0, 0.0, "k>0.7 on 1162 of 1437 points"),
            ("logreg", -402.4, 0.0, "raw LOO of q (no correction)"),
        ]
    )
    ranked = rank_rows(table)
    assert list(ranked.index) == ["sparse", "nuts", "point-estimate", "logreg", "dropout"]
    assert ranked.iloc[0]["trust"] == TRUST_OK
    pd.testing.assert_frame_equal(ranked.sort_index(), table.sort_index())  # rows unchanged


def test_no_trusted_row_keeps_elpd_order_and_the_first_row_is_marked():
    table = _table([("b", -20.0, 0.2, "k>0.7 on 1 of 5 points"), ("a", -10.0, 0.8, "R-hat 1.2")])
    ranked = rank_rows(table)
    assert list(ranked.index) == ["a", "b"] and ranked.iloc[0]["trust"] != TRUST_OK


def test_the_corrected_loo_ranks_where_it_is_finite():
    table = _table(
        [("raw-best", -10.0, 0.7, TRUST_OK), ("nuts", -12.0, 0.3, TRUST_OK)],
        corrected=[-15.0, math.nan],  # NUTS needs no correction: its raw LOO ranks it
    )
    assert ranking_elpd(table).tolist() == [-15.0, -12.0]
    assert list(rank_rows(table).index) == ["nuts", "raw-best"]
    # without the column the raw elpd_loo ranks (the table before the correction existed)
    assert list(rank_rows(table.drop(columns=CORRECTED_ELPD)).index) == ["raw-best", "nuts"]


def test_ties_keep_their_order_and_a_missing_trust_column_is_refused():
    table = _table([("x", -1.0, 0.5, TRUST_OK), ("y", -1.0, 0.5, TRUST_OK)])
    assert list(rank_rows(table).index) == ["x", "y"]
    with pytest.raises(ValueError, match="trust"):
        rank_rows(table.drop(columns="trust"))


def test_weight_on_untrusted_rows_is_noted():
    table = _table([("good", -5.0, 0.25, TRUST_OK), ("far", -1.0, 0.75, "q far (vi k=9)")])
    note = untrusted_weight_note(table)
    assert note.startswith("stacking weight 0.75 of 1 goes to rows whose ranking cannot be")
    assert "far (0.75)" in note and "good" not in note
    table["weight"] = [1.0, 0.0]
    assert untrusted_weight_note(table) is None


@pytest.fixture(scope="module")
def digits_comparison():
    """logreg:meanfield and a small MLP BNN, a few epochs on a digits subset."""
    import dataclasses

    from torch import nn

    from zoo import compare_models, create_model, fit, from_module, load

    data = load("digits")
    data = dataclasses.replace(data, x_train=data.x_train[:300], y_train=data.y_train[:300])
    models = {
        "logreg:meanfield": create_model("logreg", data=data, guide="meanfield", seed=0),
        "mlp:meanfield": from_module(
            nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)),
            data=data,
            prior="normal",
            guide="meanfield",
            name="mlp16",
            seed=0,
        ),
    }
    for zm in models.values():
        fit(zm, data, num_epochs=3, progress=False)
    return compare_models(models, data, num_samples=40)


def test_digits_comparison_satisfies_the_rule(digits_comparison):
    """The first row is trusted, or marked; no untrusted row ranks ahead of a trusted one, and
    each group is best first."""
    table = digits_comparison.table
    assert list(table.columns).index("trust") == list(table.columns).index("weight") + 1
    trusted = (table["trust"] == TRUST_OK).tolist()
    assert trusted == sorted(trusted, reverse=True)
    for _, group in table.groupby(table["trust"] == TRUST_OK):
        elpd = ranking_elpd(group).tolist()
        assert elpd == sorted(elpd, reverse=True)
    # the first row is trusted and best on the test split (within one s.e.), or marked
    first = table.iloc[0]
    if first["trust"] == TRUST_OK:
        assert first["test_elpd"] >= table["test_elpd"].max() - first["test_elpd_se"]
    else:
        assert first["trust"].strip()
    # each row is marked exactly for what its diagnostics show
    for label, row in table.iterrows():
        far = math.isfinite(row["vi_khat"]) and row["vi_khat"] > 0.7
        assert ("q far from posterior" in row["trust"]) == far, label
        assert ("raw LOO of q" in row["trust"]) == math.isnan(row["vi_khat"]), label
        high = digits_comparison.loo[label].n_high_k
        assert ("k>0.7 on" in row["trust"]) == (high > 0), label


def test_messages_is_an_attribute_and_calling_it_still_works(digits_comparison):
    messages = digits_comparison.messages
    assert list(messages) == list(digits_comparison.table.index)
    assert all(isinstance(m, list) for m in messages.values())
    with pytest.warns(FutureWarning, match="attribute"):
        assert digits_comparison.messages() == messages
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dict(digits_comparison.messages)  # the attribute itself does not warn
