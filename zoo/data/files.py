"""Where the IDX files of Fashion-MNIST and MNIST are looked for: :func:`find_idx_files`.

Nothing is ever downloaded. The search runs over an explicit ``data_dir``, the roots in
``$ZOO_DATA`` (:data:`ZOO_DATA_ENV`) and, for Fashion-MNIST, Debian's package folder
(:data:`DEBIAN_FASHION_MNIST_DIR`). Both constants are read at call time, so tests may
monkeypatch them on this module.

Usage::

    from zoo.data.files import find_idx_files

    files = find_idx_files("fashion-mnist", data_dir="~/data")
    files["train_images"]      # PosixPath('.../train-images-idx3-ubyte.gz')
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

from zoo.data.types import canonical_name

__all__ = ["DEBIAN_FASHION_MNIST_DIR", "ZOO_DATA_ENV", "data_roots", "find_idx_files"]

#: Environment variable naming extra data roots (``os.pathsep``-separated).
ZOO_DATA_ENV = "ZOO_DATA"

#: Where Debian's ``dataset-fashion-mnist`` package installs the IDX files. Looked up at call time,
#: so tests may monkeypatch it.
DEBIAN_FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")


# Basenames of the four files; the dotted spelling is how some mirrors (e.g. Kaggle) name them.
_IDX_BASENAMES: dict[str, tuple[str, ...]] = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}

# Folder name torchvision uses under its root (<root>/<folder>/raw).
_TORCHVISION_FOLDERS = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}


def data_roots(data_dir: str | os.PathLike[str] | None) -> list[pathlib.Path]:
    """The roots searched for file-based data: ``data_dir`` first, then each entry of
    ``$ZOO_DATA`` (:data:`ZOO_DATA_ENV`, ``os.pathsep``-separated), ``~`` expanded.

    :param data_dir: optional folder searched first.
    """
    roots = []
    if data_dir is not None:
        roots.append(pathlib.Path(data_dir).expanduser())
    env = os.environ.get(ZOO_DATA_ENV, "")
    roots.extend(pathlib.Path(p).expanduser() for p in env.split(os.pathsep) if p)
    return roots


def _idx_candidate_dirs(name: str, data_dir: str | os.PathLike[str] | None) -> list[pathlib.Path]:
    dirs: list[pathlib.Path] = []
    for root in data_roots(data_dir):
        dirs += [root, root / name, root / _TORCHVISION_FOLDERS[name] / "raw"]
    if name == "fashion-mnist":
        dirs.append(pathlib.Path(DEBIAN_FASHION_MNIST_DIR))
    return list(dict.fromkeys(dirs))  # drop duplicates, keep the search order


def _files_in(folder: pathlib.Path) -> dict[str, pathlib.Path] | None:
    found = {}
    for key, basenames in _IDX_BASENAMES.items():
        # The uncompressed file wins when both exist: it reads faster.
        hits = [
            folder / f"{base}{ext}"
            for ext in ("", ".gz")
            for base in basenames
            if (folder / f"{base}{ext}").is_file()
        ]
        if not hits:
            return None
        found[key] = hits[0]
    return found


def _missing_data_message(name: str, searched: Sequence[pathlib.Path]) -> str:
    folders = "\n".join(f"  - {d}" for d in searched) or "  (none)"
    files = ", ".join(names[0] for names in _IDX_BASENAMES.values())
    lines = [
        f"could not find the {name} IDX files ({files}, each raw or .gz) in any of:",
        folders,
        "A folder counts only if it holds all four files.",
        "To get the data:",
    ]
    if name == "fashion-mnist":
        lines.append(
            "  - `apt-get install dataset-fashion-mnist` (Debian/Ubuntu; the files land in "
            f"{DEBIAN_FASHION_MNIST_DIR}), or"
        )
    else:
        lines.append(
            "  - MNIST cannot be downloaded here: supply the files yourself, in a plain folder "
            "or in torchvision's layout <root>/MNIST/raw/, and"
        )
    lines.append(
        "  - put the four IDX files in a folder and pass --data-dir DIR (CLI) or data_dir=DIR, "
        f"or set {ZOO_DATA_ENV}=DIR; DIR, DIR/{name}/ and "
        f"DIR/{_TORCHVISION_FOLDERS[name]}/raw/ are all searched."
    )
    return "\n".join(lines)


def find_idx_files(
    name: str, data_dir: str | os.PathLike[str] | None = None
) -> dict[str, pathlib.Path]:
    """Locate the four IDX files of ``"fashion-mnist"`` or ``"mnist"``.

    Search order: ``data_dir``, then each root in ``$ZOO_DATA``; for every root ``<root>``,
    ``<root>/<name>/`` and torchvision's ``<root>/FashionMNIST/raw/`` (resp. ``MNIST/raw``)
    are tried too. Fashion-MNIST finally falls back to :data:`DEBIAN_FASHION_MNIST_DIR`. The
    first folder holding all four files wins.

    :param name: ``"fashion-mnist"`` or ``"mnist"``.
    :param data_dir: optional folder searched first.
    :returns: paths keyed ``train_images``, ``train_labels``, ``test_images``, ``test_labels``.
    :raises FileNotFoundError: listing every folder searched and how to get the data.
    """
    key = canonical_name(name)
    if key not in _TORCHVISION_FOLDERS:
        raise ValueError(
            f"find_idx_files: {name!r} is not an IDX dataset; use one of "
            f"{', '.join(_TORCHVISION_FOLDERS)}"
        )
    searched = _idx_candidate_dirs(key, data_dir)
    for folder in searched:
        files = _files_in(folder)
        if files is not None:
            return files
    raise FileNotFoundError(_missing_data_message(key, searched))
