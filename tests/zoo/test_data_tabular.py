"""Tests for :mod:`zoo.data.tabular`: a user's CSV and NPZ files, written into ``tmp_path``.

Every error is a ``ValueError`` whose message names the file and the column or array.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd
import pytest
import torch

from zoo import data
from zoo.data import tabular


def write_csv(path: pathlib.Path, n: int = 20, seed: int = 0, labels: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "a": rng.standard_normal(n),
            "b": rng.integers(0, 5, n),
            "label": rng.choice([-1, 1], n) if labels else rng.standard_normal(n),
        }
    )
    frame.to_csv(path, index=False)
    return frame


# --------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------


def test_csv_loads_with_the_target_column(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "f.csv"
    frame = write_csv(path)
    ds = data.load(str(path), target="label")
    assert ds.name == "f.csv"
    assert (ds.num_train, ds.num_test) == (16, 4)  # 20 * 0.2 = 4 test rows
    assert ds.info.input_shape == (2,) and ds.info.task == "classification"
    assert ds.info.num_classes == 2
    assert ds.extras["feature_names"] == ["a", "b"]
    # -1 and 1 are renumbered 0 and 1, in sorted order; the originals are recorded
    assert ds.extras["class_values"] == [-1, 1]
    assert ds.y_train.dtype == torch.int64
    # every row lands in exactly one split, with its own label
    x_all = torch.cat([ds.x_train, ds.x_test]).double()
    y_all = torch.cat([ds.y_train, ds.y_test])
    expected = torch.tensor(frame[["a", "b"]].to_numpy())
    order = torch.argsort(x_all[:, 0])
    assert torch.allclose(x_all[order], expected[torch.argsort(expected[:, 0])], atol=1e-6)
    mapped = torch.tensor((frame["label"].to_numpy() + 1) // 2)
    assert torch.equal(y_all[order], mapped[torch.argsort(expected[:, 0])])
    assert ds.source == {
        "name": str(path.resolve()),
        "kwargs": {
            "target": "label",
            "test_fraction": 0.2,
            "split_seed": 0,
            "task": "classification",
            "fingerprint": ds.source["kwargs"]["fingerprint"],
        },
    }


def test_split_is_reproducible_and_disjoint(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "f.csv"
    write_csv(path, n=50)
    one = data.load(str(path), target="label", test_fraction=0.3, split_seed=4)
    two = data.load(str(path), target="label", test_fraction=0.3, split_seed=4)
    other = data.load(str(path), target="label", test_fraction=0.3, split_seed=5)
    assert torch.equal(one.x_train, two.x_train) and torch.equal(one.x_test, two.x_test)
    assert (one.num_train, one.num_test) == (35, 15)
    # column a is continuous, so its values identify the rows
    train = set(one.x_train[:, 0].tolist())
    test = set(one.x_test[:, 0].tolist())
    assert not train & test and len(train | test) == 50
    assert set(other.x_test[:, 0].tolist()) != test
    # the split draws from its own generator: the global stream is untouched
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    data.load(str(path), target="label", split_seed=9)
    assert torch.equal(torch.rand(3), before)


def test_task_rule_and_override(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "f.csv"
    write_csv(path, labels=False)
    assert data.load(str(path), target="label").info.task == "regression"
    # the integer column b has 5 distinct values: classification, unless overridden
    ds = data.load(str(path), target="b")
    assert ds.info.task == "classification" and ds.info.num_classes == 5
    assert data.load(str(path), target="b", task="regression").y_train.dtype == torch.float32
    with pytest.raises(ValueError, match=f"{path.name}.*column 'label' holds 20 targets that"):
        data.load(str(path), target="label", task="classification")
    many = pd.DataFrame({"x": np.arange(30.0), "y": np.arange(30)})
    many.to_csv(path, index=False)
    # 30 distinct whole numbers > MAX_INFERRED_CLASSES = 20: regression
    assert data.load(str(path), target="y").info.task == "regression"
    assert tabular.infer_file_task(np.arange(20)) == "classification"
    assert tabular.infer_file_task(np.arange(21)) == "regression"


@pytest.mark.parametrize(
    ("content", "target", "message"),
    [
        ("", "y", "the file is empty"),
        ("a,y\n", "y", "no data rows"),
        ("a,b\n1,2\n", "y", "no column 'y'; the columns are: 'a', 'b'"),
        (
            "a,y\n1,2\n3,x\n",
            "y",
            r"column 'y' is not numeric: 1 cells are text, first in data row 1",
        ),
        ("a,y\nred,2\n3,4\n", "y", "column 'a' is not numeric.*'red'"),
        ("a,y\n1,2\n,4\n5,6\n", "y", r"column 'a' has 1 empty, NaN or infinite cells, .*line 3"),
        ("a,y\n1,2\nnan,4\n", "y", "column 'a' has 1 empty, NaN"),
        ("a,y\n1,2\ninf,4\n", "y", "column 'a' has 1 empty, NaN or infinite"),
        ("y\n1\n2\n", "y", "the only column is the target 'y'"),
        ("a,y\n1,2\n3,4\n", 3, "target must be a column name"),
        ("a,y\n1,2\n3,4\n", None, "needs target="),
    ],
    ids=[
        "empty",
        "header-only",
        "missing-target",
        "text-target",
        "text-feature",
        "empty-cell",
        "nan",
        "inf",
        "no-features",
        "target-type",
        "no-target",
    ],
)
def test_csv_errors_name_the_file_and_column(
    tmp_path: pathlib.Path, content: str, target: object, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        data.load(str(path), target=target)
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------------------------
# NPZ
# --------------------------------------------------------------------------------------------


def test_npz_with_its_own_test_split(tmp_path: pathlib.Path) -> None:
    rng = np.random.default_rng(0)
    x, x_test = rng.standard_normal((8, 2, 3)), rng.standard_normal((3, 2, 3))
    y, y_test = rng.standard_normal((8, 1)), rng.standard_normal(3)
    path = tmp_path / "f.npz"
    np.savez(path, x=x, y=y, x_test=x_test, y_test=y_test)
    ds = data.load(str(path))
    assert ds.info.task == "regression" and ds.info.input_shape == (2, 3)
    assert torch.equal(ds.x_test, torch.from_numpy(x_test).float())
    # the (N, 1) column becomes (N,)
    assert ds.y_train.shape == (8,) and torch.equal(ds.y_train, torch.from_numpy(y[:, 0]).float())
    assert ds.source["kwargs"].keys() == {"task", "fingerprint"}
    for option, flag in (("test_fraction", "--test-fraction"), ("split_seed", "--split-seed")):
        with pytest.raises(ValueError, match=f"{path}.*x_test.*{flag} do not apply"):
            data.load(str(path), **{option: 0.5 if option == "test_fraction" else 1})
    with pytest.raises(ValueError, match=f"{path}.*--target.*applies to CSV files only"):
        data.load(str(path), target="y")


def test_npz_without_test_is_split_and_without_y_is_unsupervised(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "f.npz"
    np.savez(path, x=np.arange(20.0).reshape(10, 2), y=np.array([3, 5] * 5))
    ds = data.load(str(path), test_fraction=0.5, split_seed=2)
    assert (ds.num_train, ds.num_test) == (5, 5) and ds.info.num_classes == 2
    assert ds.extras["class_values"] == [3, 5]
    np.savez(path, x=np.ones((4, 3)))
    ds = data.load(str(path))
    assert ds.info.task == "unsupervised" and ds.y_train is None
    with pytest.raises(ValueError, match=f"{path}: task 'regression' needs targets.*'y'"):
        data.load(str(path), task="regression")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"X": np.ones((3, 2))}, "expected arrays x, y, x_test, y_test.*holds 'X'.*'X' unknown"),
        ({"x": np.ones((3, 2)), "labels": np.ones(3)}, "'labels' unknown"),
        ({"x": np.ones((3, 2)), "y": np.ones(4)}, "array 'y' has 4 rows but 'x' has 3"),
        ({"x": np.ones(3), "y": np.ones(3)}, r"array 'x' has shape \(3,\); inputs need"),
        ({"x": np.array([["a", "b"]] * 3), "y": np.ones(3)}, "array 'x' has dtype <U1"),
        ({"x": np.ones((0, 2))}, r"array 'x' is empty or a scalar \(shape \(0, 2\)\)"),
        ({"x": np.array([[1.0, np.nan]] * 3)}, "array 'x' has NaN or infinite values in 3 of 3"),
        ({"x": np.ones((3, 2)), "y": np.ones((3, 2))}, r"array 'y' has shape \(3, 2\)"),
        ({"x": np.ones((3, 2)), "y_test": np.ones(2)}, "'y_test' is given without 'x_test'"),
        (
            {"x": np.ones((3, 2)), "y": np.ones(3), "x_test": np.ones((2, 2))},
            "array 'y_test' is missing but 'y' is given",
        ),
        (
            {"x": np.ones((3, 2)), "x_test": np.ones((2, 3))},
            r"examples of 'x_test' have shape \(3,\) but those of 'x' have \(2,\)",
        ),
        (
            {
                "x": np.ones((3, 2)),
                "y": np.ones(3),
                "x_test": np.ones((2, 2)),
                "y_test": np.ones(1),
            },
            "array 'y_test' has 1 rows but 'x_test' has 2",
        ),
    ],
    ids=[
        "no-x",
        "unknown-array",
        "lengths",
        "1-d-x",
        "text",
        "empty",
        "nan",
        "2-d-y",
        "y_test-alone",
        "no-y_test",
        "test-shape",
        "test-lengths",
    ],
)
def test_npz_errors_name_the_file_and_array(
    tmp_path: pathlib.Path, arrays: dict, message: str
) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message) as err:
        data.load(str(path))
    assert str(path) in str(err.value)


def test_npz_unreadable_files(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=f"{path}: the file is empty"):
        data.load(str(path))
    path.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match=f"{path}: not a readable .npz file"):
        data.load(str(path))
    np.savez(path, x=np.array([{"a": 1}] * 3, dtype=object))
    with pytest.raises(ValueError, match=f"{path}: array 'x' cannot be read without pickle"):
        data.load(str(path))


# --------------------------------------------------------------------------------------------
# Paths and fingerprints
# --------------------------------------------------------------------------------------------


def test_paths_that_are_not_csv_or_npz(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"no file at {tmp_path / 'nope.csv'}"):
        data.load(str(tmp_path / "nope.csv"), target="y")
    (tmp_path / "f.txt").write_text("a,b\n")
    with pytest.raises(ValueError, match=r"unsupported file type '\.txt'.*\.csv and \.npz"):
        data.load(str(tmp_path / "f.txt"))
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        data.load(str(tmp_path / "d.csv"))
    write_csv(tmp_path / "f.csv")
    with pytest.raises(ValueError, match=r"data_dir= \(--data-dir\) does not apply to a file"):
        data.load(str(tmp_path / "f.csv"), target="label", data_dir=tmp_path)
    with pytest.raises(ValueError, match="task must be one of"):
        data.load(str(tmp_path / "f.csv"), target="label", task="clustering")


def test_source_reloads_and_refuses_changed_content(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "f.csv"
    frame = write_csv(path)
    ds = data.load(str(path), target="label", split_seed=3)
    again = data.load(ds.source["name"], **ds.source["kwargs"])
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)
    # the fingerprint is of the values read, not of the bytes: a rewrite of the same values keeps it
    path.write_text(frame.to_csv(index=False, float_format="%.17g"))
    data.load(ds.source["name"], **ds.source["kwargs"])
    frame.loc[3, "a"] += 1.0
    frame.to_csv(path, index=False)
    recorded = ds.source["kwargs"]["fingerprint"]
    with pytest.raises(ValueError, match=f"{path} has changed") as err:
        data.load(ds.source["name"], **ds.source["kwargs"])
    now = tabular.file_fingerprint(tabular.read_csv(path, "label"))
    assert recorded in str(err.value) and now in str(err.value) and now != recorded


def test_is_file_name() -> None:
    assert tabular.is_file_name("my.CSV") and tabular.is_file_name("d/x.npz")
    assert tabular.is_file_name("data/folder")
    assert not tabular.is_file_name("digits") and not tabular.is_file_name("fashion-mnist")
