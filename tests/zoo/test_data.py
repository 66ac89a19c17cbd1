"""Tests for :mod:`zoo.data`: IDX I/O, dataset discovery, loaders and user tensors.

Everything runs on the CPU from data written into ``tmp_path``; nothing is downloaded.
"""

from __future__ import annotations

import gzip
import pathlib

import numpy as np
import pytest
import torch

from zoo import data
from zoo.data import IDXFormatError
from zoo.data import files as data_files

NUM_TRAIN = 20
NUM_TEST = 7

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@pytest.fixture(autouse=True)
def _isolated_search_path(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    # Keep the machine's own data (ZOO_DATA, the Debian package) out of every test's search.
    monkeypatch.delenv(data.ZOO_DATA_ENV, raising=False)
    # Patched where it is read: zoo.data re-exports the value, zoo.data.files looks it up.
    monkeypatch.setattr(data_files, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian-package")


def make_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, size=(NUM_TRAIN, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, size=NUM_TRAIN, dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(NUM_TEST, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, size=NUM_TEST, dtype=np.uint8),
    }


def write_set(folder: pathlib.Path, arrays: dict[str, np.ndarray], gz: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in IDX_NAMES.items():
        data.write_idx(folder / (name + (".gz" if gz else "")), arrays[key])


def assert_matches(ds: data.Dataset, arrays: dict[str, np.ndarray]) -> None:
    for split in ("train", "test"):
        images = arrays[f"{split}_images"]
        # float32 division is correctly rounded, so the loader must agree bit for bit.
        expected = torch.from_numpy(images.astype(np.float32) / np.float32(255)).unsqueeze(1)
        x = getattr(ds, f"x_{split}")
        y = getattr(ds, f"y_{split}")
        assert x.dtype == torch.float32
        assert y.dtype == torch.int64
        assert torch.equal(x, expected)
        assert torch.equal(y, torch.from_numpy(arrays[f"{split}_labels"].astype(np.int64)))
    assert ds.num_train == NUM_TRAIN
    assert ds.num_test == NUM_TEST


# --------------------------------------------------------------------------------------------
# read_idx / write_idx
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (3, 4, 5)])
def test_idx_round_trip(
    tmp_path: pathlib.Path, dtype: type, suffix: str, shape: tuple[int, ...]
) -> None:
    rng = np.random.default_rng(1)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    else:
        array = rng.standard_normal(shape).astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    data.write_idx(path, array)
    back = data.read_idx(path)
    assert back.dtype == np.dtype(dtype)
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)
    back[...] = 0  # the result must be a writable, independent array


def test_write_idx_header_bytes(tmp_path: pathlib.Path) -> None:
    # Checks the on-disk layout against the format itself, not just against our own reader.
    path = tmp_path / "x.idx"
    data.write_idx(path, np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int16))
    raw = path.read_bytes()
    assert raw[:4] == bytes([0, 0, 0x0B, 2])
    assert raw[4:12] == bytes([0, 0, 0, 2, 0, 0, 0, 3])
    assert raw[12:] == bytes([0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6])  # big-endian int16
    gz_path = tmp_path / "x.idx.gz"
    data.write_idx(gz_path, np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int16))
    assert gzip.decompress(gz_path.read_bytes()) == raw


def test_write_idx_rejects_unsupported_dtype(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="int64"):
        data.write_idx(tmp_path / "x.idx", np.zeros(3, dtype=np.int64))


def test_read_idx_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError):
        data.read_idx(tmp_path / "nope-idx1-ubyte")


def _valid_bytes() -> bytes:
    # uint8, dims (2, 3): 4 + 8 header bytes and 6 payload bytes.
    return bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\x01" + _valid_bytes()[1:], "bad magic"),
        (_valid_bytes()[:2] + b"\x07" + _valid_bytes()[3:], "unknown IDX type code 0x07"),
        (_valid_bytes()[:-2], "expected 6 bytes for dims (2, 3) of uint8, found 4"),
        (_valid_bytes() + b"\x00\x00\x00", "trailing bytes: expected 6 bytes"),
        (_valid_bytes()[:9], "header declares 2 dimensions"),
        (b"\x00\x00", "too short"),
    ],
    ids=["bad-magic", "unknown-type", "truncated", "trailing", "short-header", "tiny"],
)
def test_read_idx_corrupt(tmp_path: pathlib.Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(IDXFormatError, match="bad-idx3-ubyte") as err:
        data.read_idx(path)
    assert fragment in str(err.value)


def test_read_idx_valid_bytes_sanity(tmp_path: pathlib.Path) -> None:
    # Guards the corrupt-file cases above: the unmodified bytes must parse.
    path = tmp_path / "good"
    path.write_bytes(_valid_bytes())
    np.testing.assert_array_equal(data.read_idx(path), np.arange(6, dtype=np.uint8).reshape(2, 3))


def test_read_idx_truncated_gzip(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "images-idx3-ubyte.gz"
    data.write_idx(path, np.zeros((5, 28, 28), dtype=np.uint8) + 7)
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(IDXFormatError, match=r"images-idx3-ubyte\.gz.*gzip"):
        data.read_idx(path)


def test_read_idx_not_gzip_despite_suffix(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(b"\x00\x00\x08\x01garbage")
    with pytest.raises(IDXFormatError, match="gzip"):
        data.read_idx(path)


def test_read_idx_gzip_without_suffix(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 2, 4, 9])))
    np.testing.assert_array_equal(data.read_idx(path), np.array([4, 9], dtype=np.uint8))


# --------------------------------------------------------------------------------------------
# fashion-mnist / mnist discovery and loading
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subdir", "gz"),
    [("", False), ("", True), ("fashion-mnist", True), ("FashionMNIST/raw", False)],
    ids=["plain", "gz", "named-subfolder", "torchvision"],
)
def test_fashion_mnist_layouts(tmp_path: pathlib.Path, subdir: str, gz: bool) -> None:
    root = tmp_path / "root"
    arrays = make_arrays()
    write_set(root / subdir, arrays, gz=gz)
    ds = data.load("fashion-mnist", data_dir=root)
    assert_matches(ds, arrays)
    assert ds.x_train.shape == (NUM_TRAIN, 1, 28, 28)
    assert ds.info == data.dataset_info("fashion-mnist")
    assert ds.info.num_classes == 10
    assert ds.info.image_shape == (28, 28)
    names = ds.extras["class_names"]
    assert len(names) == 10
    assert names[0] == "T-shirt/top"
    assert names[9] == "Ankle boot"
    assert ds.source == {"name": "fashion-mnist", "kwargs": {"data_dir": str(root)}}


def test_fashion_mnist_from_env(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = make_arrays(3)
    write_set(tmp_path / "env-root" / "FashionMNIST" / "raw", arrays, gz=True)
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "env-root"))
    assert_matches(data.load("fashion-mnist"), arrays)


def test_data_dir_wins_over_env(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from_arg, from_env = make_arrays(1), make_arrays(2)
    write_set(tmp_path / "arg", from_arg)
    write_set(tmp_path / "env", from_env)
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "env"))
    assert_matches(data.load("fashion-mnist", data_dir=tmp_path / "arg"), from_arg)
    found = data.find_idx_files("fashion-mnist", tmp_path / "arg")
    assert found == {k: tmp_path / "arg" / v for k, v in IDX_NAMES.items()}


def test_debian_folder_is_the_fallback(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrays = make_arrays(4)
    write_set(tmp_path / "debian", arrays, gz=True)
    monkeypatch.setattr(data_files, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "debian")
    assert_matches(data.load("fashion-mnist"), arrays)
    # The Debian package only ships Fashion-MNIST, so MNIST must not look there.
    with pytest.raises(FileNotFoundError):
        data.load("mnist")


def test_mnist_torchvision_layout(tmp_path: pathlib.Path) -> None:
    arrays = make_arrays(5)
    write_set(tmp_path / "MNIST" / "raw", arrays)
    ds = data.load("mnist", data_dir=tmp_path)
    assert_matches(ds, arrays)
    assert ds.extras["class_names"] == [str(i) for i in range(10)]


def test_missing_fashion_mnist_message(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "empty"
    # Three of four files do not make a usable folder.
    write_set(root, make_arrays())
    (root / IDX_NAMES["test_labels"]).unlink()
    with pytest.raises(FileNotFoundError) as err:
        data.load("fashion-mnist", data_dir=root)
    message = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in message
    for folder in (root, root / "fashion-mnist", root / "FashionMNIST" / "raw"):
        assert f"- {folder}\n" in message
    assert str(tmp_path / "no-debian-package") in message
    assert "ZOO_DATA" in message
    assert "data_dir" in message


def test_missing_mnist_message(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as err:
        data.load("mnist", data_dir=tmp_path / "arg")
    message = str(err.value)
    assert "apt-get" not in message
    assert str(tmp_path / "arg" / "MNIST" / "raw") in message
    assert str(tmp_path / "env" / "mnist") in message
    assert "cannot be downloaded" in message


def test_image_label_count_mismatch(tmp_path: pathlib.Path) -> None:
    arrays = make_arrays()
    arrays["train_labels"] = arrays["train_labels"][:-1]
    write_set(tmp_path, arrays)
    with pytest.raises(IDXFormatError, match=f"{NUM_TRAIN} images .* {NUM_TRAIN - 1} labels"):
        data.load("fashion-mnist", data_dir=tmp_path)


def test_label_out_of_range(tmp_path: pathlib.Path) -> None:
    arrays = make_arrays()
    arrays["test_labels"][3] = 10
    write_set(tmp_path, arrays)
    with pytest.raises(IDXFormatError, match=r"outside 0\.\.9, first at index 3 \(value 10\)"):
        data.load("fashion-mnist", data_dir=tmp_path)


def test_images_wrong_ndim(tmp_path: pathlib.Path) -> None:
    arrays = make_arrays()
    arrays["train_images"] = arrays["train_images"].reshape(NUM_TRAIN, 1, 28, 28)
    write_set(tmp_path, arrays)
    with pytest.raises(IDXFormatError, match=r"train-images.*expected images \(N, H, W\)"):
        data.load("fashion-mnist", data_dir=tmp_path)


def test_train_and_test_images_of_different_sizes(tmp_path: pathlib.Path) -> None:
    arrays = make_arrays()
    arrays["test_images"] = arrays["test_images"][:, :20, :]
    write_set(tmp_path, arrays)
    with pytest.raises(IDXFormatError, match=r"\(1, 28, 28\) but .*t10k-images.* \(1, 20, 28\)"):
        data.load("fashion-mnist", data_dir=tmp_path)


def test_idx_images_of_another_size_load(tmp_path: pathlib.Path) -> None:
    # 3 training and 2 test images of 10x12: the shape is taken from the files.
    rng = np.random.default_rng(1)
    arrays = {
        "train_images": rng.integers(0, 256, size=(3, 10, 12), dtype=np.uint8),
        "train_labels": np.array([0, 9, 4], dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(2, 10, 12), dtype=np.uint8),
        "test_labels": np.array([1, 2], dtype=np.uint8),
    }
    write_set(tmp_path, arrays)
    ds = data.load("mnist", data_dir=tmp_path)
    assert ds.x_train.shape == (3, 1, 10, 12) and ds.x_test.shape == (2, 1, 10, 12)
    assert ds.info.input_shape == (1, 10, 12) and ds.info.image_shape == (10, 12)
    expected = torch.from_numpy(arrays["train_images"].astype(np.float32) / np.float32(255))
    assert torch.equal(ds.x_train[:, 0], expected)
    assert ds.y_train.tolist() == [0, 9, 4]
    # dataset_info, which reads no files, still describes the usual files
    assert data.dataset_info("mnist").input_shape == (1, 28, 28)


def test_idx_vectors_load_as_vectors(tmp_path: pathlib.Path) -> None:
    # Not images: (N, D) float32 arrays are read as (N, D) inputs, values kept as they are.
    arrays = make_arrays()
    vectors = np.random.default_rng(2).standard_normal((NUM_TRAIN, 5)).astype(np.float32)
    arrays["train_images"] = vectors
    arrays["test_images"] = vectors[:NUM_TEST]
    write_set(tmp_path, arrays)
    ds = data.load("fashion-mnist", data_dir=tmp_path)
    assert ds.info.input_shape == (5,) and ds.info.image_shape is None
    assert torch.equal(ds.x_train, torch.from_numpy(vectors))


def test_tiles_refuse_idx_images_of_another_size(tmp_path: pathlib.Path) -> None:
    arrays = make_arrays()
    arrays["train_images"] = arrays["train_images"][:, :20, :20]
    arrays["test_images"] = arrays["test_images"][:, :20, :20]
    write_set(tmp_path, arrays)
    with pytest.raises(ValueError, match=r"need 28x28 images.*\(1, 20, 20\)"):
        data.load("cluttered-tiles", source="mnist", data_dir=tmp_path)


def test_data_dir_is_refused_where_it_does_not_apply(tmp_path: pathlib.Path) -> None:
    for name, kwargs in (("digits", {}), ("ppca-synthetic", {}), ("cluttered-tiles", {})):
        with pytest.raises(ValueError, match=f"data_dir.*does not apply to the dataset '{name}'"):
            data.load(name, data_dir=tmp_path, **kwargs)


def test_uses_data_dir() -> None:
    assert data.uses_data_dir("mnist") and data.uses_data_dir("Fashion_MNIST")
    assert data.uses_data_dir("cluttered-tiles", source="fashion-mnist")
    assert not data.uses_data_dir("cluttered-tiles") and not data.uses_data_dir("digits")
    assert not data.uses_data_dir("my.csv")


def test_file_options_are_refused_for_catalog_names() -> None:
    with pytest.raises(ValueError, match=r"target= \(--target\) does not apply.*'digits'"):
        data.load("digits", target="y")
    with pytest.raises(ValueError, match=r"split_seed= \(--split-seed\) does not apply"):
        data.load("regression-synthetic", split_seed=1)
    with pytest.raises(ValueError, match=r"test_fraction= \(--test-fraction\).*'mnist'"):
        data.load("mnist", test_fraction=0.5)
    assert data.load("digits", test_fraction=0.5).num_test == 899  # digits takes it


REAL_FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(
    not REAL_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist is not installed"
)
def test_real_fashion_mnist() -> None:
    ds = data.load("fashion-mnist", data_dir=REAL_FASHION_MNIST)
    assert (ds.num_train, ds.num_test) == (60000, 10000)
    assert ds.x_train.shape[1:] == (1, 28, 28)
    assert torch.unique(ds.y_train).tolist() == list(range(10))
    assert 0.0 <= float(ds.x_train.min()) and float(ds.x_train.max()) <= 1.0


# --------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------


def test_digits_split_is_fixed_and_stratified() -> None:
    first = data.load("digits")
    second = data.load("digits", device="cpu")
    for attr in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(first, attr), getattr(second, attr))
    assert (first.num_train, first.num_test) == (1437, 360)
    assert first.x_train.shape == (1437, 1, 8, 8)
    assert first.x_train.dtype == torch.float32
    assert first.y_train.dtype == torch.int64
    # Stratified: each class's share of the test split matches its share of the whole set.
    counts_all = torch.bincount(torch.cat([first.y_train, first.y_test]), minlength=10)
    counts_test = torch.bincount(first.y_test, minlength=10)
    assert bool((counts_test > 0).all())
    assert bool(((counts_test - 0.2 * counts_all).abs() <= 1).all())
    x = torch.cat([first.x_train, first.x_test])
    assert float(x.min()) == 0.0
    assert float(x.max()) == 1.0
    assert torch.equal(x * 16, torch.round(x * 16))  # exactly the original 0..16 intensities
    assert first.info == data.dataset_info("digits")


def test_digits_other_seed_gives_other_split() -> None:
    a, b = data.load("digits"), data.load("digits", seed=1)
    assert not torch.equal(a.y_test, b.y_test)


# --------------------------------------------------------------------------------------------
# synthetic sets
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["digits", "ppca-synthetic", "regression-synthetic", "classification-synthetic"]
)
def test_loaders_leave_global_rng_alone(name: str) -> None:
    torch_state = torch.get_rng_state()
    # The legacy global numpy RNG is exactly what must stay untouched (scikit-learn could use it).
    numpy_state = np.random.get_state()[1].copy()  # noqa: NPY002
    data.load(name, seed=5)
    assert torch.equal(torch_state, torch.get_rng_state())
    np.testing.assert_array_equal(numpy_state, np.random.get_state()[1])  # noqa: NPY002


def test_ppca_is_deterministic() -> None:
    a = data.load("ppca-synthetic", seed=3)
    b = data.load("ppca-synthetic", seed=3)
    c = data.load("ppca-synthetic", seed=4)
    assert torch.equal(a.x_train, b.x_train)
    assert torch.equal(a.extras["W"], b.extras["W"])
    assert not torch.equal(a.x_train, c.x_train)
    assert a.y_train is None
    assert a.y_test is None
    assert a.info == data.DataInfo((10,), "unsupervised")
    assert (a.num_train, a.num_test) == (800, 200)


def test_ppca_ground_truth() -> None:
    ds = data.load("ppca-synthetic", num_data=20000)
    w, mu, sigma2 = ds.extras["W"], ds.extras["mu"], ds.extras["sigma2"]
    assert w.shape == (10, 3)
    assert w.dtype == mu.dtype == sigma2.dtype == torch.float64
    assert sigma2.dim() == 0
    assert float(sigma2) == pytest.approx(0.25)
    assert float(mu.abs().max()) > 0.1
    # Orthogonal columns with distinct, decreasing norms make the latent axes identifiable.
    gram = w.T @ w
    assert torch.allclose(gram, torch.diag(torch.diag(gram)), atol=1e-10)
    norms = torch.diag(gram).sqrt()
    assert norms[0] == pytest.approx(3.0)
    assert bool((norms[:-1] - norms[1:] > 0.3).all())

    x = torch.cat([ds.x_train, ds.x_test]).double()
    expected = w @ w.T + sigma2 * torch.eye(10, dtype=torch.float64)
    sample = torch.cov(x.T)
    # Sampling error of the covariance with N=20000 is about 1.5% in Frobenius norm.
    rel_err = torch.linalg.norm(sample - expected) / torch.linalg.norm(expected)
    assert float(rel_err) < 0.05
    assert float((x.mean(0) - mu).abs().max()) < 0.1


def test_regression_synthetic_ground_truth() -> None:
    ds = data.load("regression-synthetic", num_data=5000, noise_std=0.3)
    x = torch.cat([ds.x_train, ds.x_test]).double()
    y = torch.cat([ds.y_train, ds.y_test]).double()
    residual = y - (x @ ds.extras["w"] + ds.extras["b"])
    assert float(residual.std()) == pytest.approx(0.3, rel=0.05)
    assert ds.info.task == "regression"
    assert ds.y_train.dtype == torch.float32
    assert ds.y_train.shape == (4000,)


def test_classification_synthetic_ground_truth() -> None:
    ds = data.load("classification-synthetic", num_data=5000, num_classes=4, seed=2)
    assert ds.info == data.dataset_info("classification-synthetic", num_classes=4)
    assert ds.info.num_classes == 4
    y = torch.cat([ds.y_train, ds.y_test])
    assert y.dtype == torch.int64
    assert set(y.tolist()) == {0, 1, 2, 3}
    x = torch.cat([ds.x_train, ds.x_test]).double()
    bayes = (x @ ds.extras["W"] + ds.extras["b"]).argmax(dim=1)
    # Labels are sampled from the true softmax, so its argmax is far better than chance (0.25).
    assert float((bayes == y).double().mean()) > 0.6


def test_source_reloads_the_same_data() -> None:
    ds = data.load("regression-synthetic", seed=7, input_dim=3)
    again = data.load(ds.source["name"], **ds.source["kwargs"])
    assert torch.equal(ds.x_test, again.x_test)
    assert torch.equal(ds.y_test, again.y_test)


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------


def test_list_datasets() -> None:
    names = data.list_datasets()
    for name in (
        "digits",
        "fashion-mnist",
        "mnist",
        "ppca-synthetic",
        "regression-synthetic",
        "classification-synthetic",
    ):
        assert name in names


def test_unknown_name_suggests_close_match() -> None:
    with pytest.raises(ValueError, match="fashion-mnst") as err:
        data.load("fashion-mnst")
    message = str(err.value)
    assert "Did you mean 'fashion-mnist'" in message
    for name in data.list_datasets():
        assert name in message
    with pytest.raises(ValueError, match="Did you mean"):
        data.dataset_info("digit")


def test_unknown_kwarg_names_accepted_ones() -> None:
    with pytest.raises(TypeError, match=r"latent_dims.*accepts: num_data, input_dim, latent_dim"):
        data.load("ppca-synthetic", latent_dims=2)
    with pytest.raises(TypeError, match="seed"):
        data.dataset_info("digits", sed=1)


def test_invalid_kwarg_values() -> None:
    with pytest.raises(ValueError, match="latent_dim"):
        data.dataset_info("ppca-synthetic", input_dim=2, latent_dim=3)
    with pytest.raises(ValueError, match="test_fraction"):
        data.load("digits", test_fraction=1.5)
    with pytest.raises(TypeError, match="integer"):
        data.load("regression-synthetic", num_data=10.5)


def test_dataset_info_reads_no_files() -> None:
    # No IDX files exist anywhere on the search path in these tests.
    with pytest.raises(FileNotFoundError):
        data.load("mnist")
    info = data.dataset_info("mnist", data_dir="/nonexistent", device="cpu")
    assert info.input_shape == (1, 28, 28)
    assert info.input_dim == 784


def test_name_is_normalised() -> None:
    assert data.dataset_info("PPCA_Synthetic") == data.dataset_info("ppca-synthetic")


# --------------------------------------------------------------------------------------------
# Dataset container
# --------------------------------------------------------------------------------------------


def test_dataset_to_cpu() -> None:
    ds = data.load("ppca-synthetic", num_data=50)
    moved = ds.to("cpu")
    assert moved is not ds
    assert moved.device == torch.device("cpu")
    assert moved.extras["W"].device == torch.device("cpu")
    assert torch.equal(moved.x_train, ds.x_train)
    assert moved.info == ds.info
    assert (moved.num_train, moved.num_test) == (40, 10)
    assert "ppca-synthetic" in repr(moved)


# --------------------------------------------------------------------------------------------
# from_tensors / validate_tensors
# --------------------------------------------------------------------------------------------


def test_from_tensors_infers_classification() -> None:
    x = torch.randn(30, 4, dtype=torch.float64)
    y = torch.arange(30, dtype=torch.int32) % 4
    x_before, y_before = x.clone(), y.clone()
    ds = data.from_tensors(x, y)
    assert ds.info == data.DataInfo((4,), "classification", num_classes=4)
    assert ds.x_train.dtype == torch.float32
    assert ds.y_train.dtype == torch.int64
    assert ds.x_test.shape == (0, 4)
    assert ds.y_test.shape == (0,)
    assert ds.source == {}
    # The dataset is a copy: writing to it leaves the caller's tensors alone.
    ds.x_train.zero_()
    ds.y_train.zero_()
    assert torch.equal(x, x_before)
    assert torch.equal(y, y_before)


def test_from_tensors_num_classes_covers_test_labels() -> None:
    ds = data.from_tensors(
        torch.randn(5, 2), torch.tensor([0, 1, 1, 0, 2]), x_test=torch.randn(2, 2), y_test=[4, 0]
    )
    assert ds.info.num_classes == 5
    assert ds.num_test == 2


def test_from_tensors_regression_and_unsupervised() -> None:
    x = np.random.default_rng(0).standard_normal((10, 3, 4, 4))
    reg = data.from_tensors(x, np.linspace(0, 1, 10))
    assert reg.info.task == "regression"
    assert reg.info.num_classes is None
    assert reg.info.image_shape == (4, 4)
    assert reg.y_train.dtype == torch.float32
    assert reg.y_test.shape == (0,)
    unsup = data.from_tensors(torch.randn(8, 5), name="mine")
    assert unsup.info.task == "unsupervised"
    assert unsup.y_train is None
    assert unsup.y_test is None
    assert unsup.name == "mine"
    assert unsup.x_test.shape == (0, 5)


def test_from_tensors_flattens_a_regression_column() -> None:
    x = torch.randn(6, 2)
    y = torch.linspace(0, 1, 6)
    ds = data.from_tensors(x, y.unsqueeze(1), x_test=x[:2], y_test=y[:2].unsqueeze(1))
    assert ds.info.task == "regression"
    assert ds.y_train.shape == (6,) and torch.equal(ds.y_train, y)
    assert ds.y_test.shape == (2,) and torch.equal(ds.y_test, y[:2])
    # numpy columns too, and the empty default test split is (0,)
    ds = data.from_tensors(x.numpy(), y.numpy()[:, None])
    assert ds.y_train.shape == (6,) and ds.y_test.shape == (0,)
    with pytest.raises(ValueError, match=r"y holds regression targets .* got \(6, 2\)"):
        data.from_tensors(x, torch.randn(6, 2))
    with pytest.raises(ValueError, match=r"y holds regression .* got \(6, 1, 1\)"):
        data.from_tensors(x, torch.randn(6, 1, 1))
    with pytest.raises(ValueError, match=r"y_test holds regression .* got \(2, 3\)"):
        data.from_tensors(x, y, x_test=x[:2], y_test=torch.randn(2, 3))
    # validate_tensors, which checks what reaches a model, takes (N,) only
    with pytest.raises(ValueError, match=r"y_train holds regression targets and must be 1-D"):
        data.validate_tensors(x, y.unsqueeze(1), where="x_train")


def test_from_tensors_accepts_awkward_numpy_arrays() -> None:
    base = np.arange(12, dtype=np.float64).reshape(6, 2)
    read_only = base.copy()
    read_only.flags.writeable = False
    ds = data.from_tensors(read_only, x_test=base[::-1])
    assert ds.x_train.tolist() == base.tolist()
    assert ds.x_test.tolist() == base[::-1].tolist()


def test_from_tensors_rejects_nan() -> None:
    x = torch.randn(10, 3)
    x[4, 1] = float("nan")
    x[7, 0] = float("inf")
    with pytest.raises(ValueError, match=r"x has non-finite .* 2 of 10 rows; first bad row: 4"):
        data.from_tensors(x)
    with pytest.raises(ValueError, match="y has non-finite"):
        data.from_tensors(torch.randn(3, 2), torch.tensor([0.0, float("nan"), 1.0]))


def test_from_tensors_label_checks() -> None:
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match=r"y has 1 labels >= num_classes=3; first at index 2"):
        data.from_tensors(x, torch.tensor([0, 1, 3, 2]), num_classes=3)
    with pytest.raises(ValueError, match="negative"):
        data.from_tensors(x, torch.tensor([0, -1, 1, 2]))
    with pytest.raises(ValueError, match="whole numbers"):
        data.from_tensors(x, torch.tensor([0.0, 1.5, 1.0, 2.0]), task="classification")
    with pytest.raises(ValueError, match="1-D"):
        data.from_tensors(x, torch.zeros(4, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="num_classes only applies"):
        data.from_tensors(x, torch.randn(4), num_classes=3)
    ok = data.from_tensors(x, torch.tensor([0.0, 1.0, 1.0, 2.0]), task="classification")
    assert ok.y_train.tolist() == [0, 1, 1, 2]


def test_from_tensors_shape_checks() -> None:
    with pytest.raises(ValueError, match="y has 3 rows but x has 4"):
        data.from_tensors(torch.randn(4, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        data.from_tensors(torch.randn(4))
    with pytest.raises(ValueError, match="empty"):
        data.from_tensors(torch.randn(0, 3))
    with pytest.raises(ValueError, match="x_test examples have shape"):
        data.from_tensors(torch.randn(4, 2), x_test=torch.randn(2, 3))
    with pytest.raises(ValueError, match="y_test"):
        data.from_tensors(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]), x_test=torch.randn(2, 2))


def test_validate_tensors_names_the_argument() -> None:
    x = torch.ones(3, 2)
    data.validate_tensors(x, torch.tensor([0, 1, 1]), num_classes=2)
    with pytest.raises(ValueError, match="y_test has 1 labels >= num_classes=2"):
        data.validate_tensors(x, torch.tensor([0, 2, 1]), num_classes=2, where="x_test")
    x[2, 0] = float("nan")
    with pytest.raises(ValueError, match="x_test has non-finite"):
        data.validate_tensors(x, where="x_test")
    with pytest.raises(ValueError, match="needs targets"):
        data.validate_tensors(torch.ones(3, 2), task="regression")
    with pytest.raises(ValueError, match="unknown task"):
        data.validate_tensors(torch.ones(3, 2), task="clustering")
