"""The IDX format of MNIST and Fashion-MNIST: :func:`read_idx` and :func:`write_idx`.

An IDX file is a big-endian header (two zero bytes, a type code, the number of dimensions, one
32-bit size per dimension) followed by the payload, big-endian too; the whole file may be
gzip-compressed. The format is documented on the MNIST page of LeCun, Cortes and Burges
(http://yann.lecun.com/exdb/mnist/); Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017,
arXiv:1708.07747) uses it unchanged.

Usage::

    from zoo.data.idx import read_idx, write_idx

    write_idx("labels-idx1-ubyte.gz", np.arange(10, dtype=np.uint8))
    read_idx("labels-idx1-ubyte.gz")        # array([0, 1, ..., 9], dtype=uint8)
"""

from __future__ import annotations

import gzip
import math
import os
import pathlib
import struct
import zlib
from typing import Any

import numpy as np

__all__ = ["IDXFormatError", "read_idx", "write_idx"]


class IDXFormatError(ValueError):
    """An IDX file is corrupt, truncated, or does not hold what the loader expects."""


# IDX type code -> numpy dtype. The payload is big-endian whatever the machine.
_IDX_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(np.int16),
    0x0C: np.dtype(np.int32),
    0x0D: np.dtype(np.float32),
    0x0E: np.dtype(np.float64),
}
_IDX_DTYPES: dict[np.dtype, int] = {dt: code for code, dt in _IDX_CODES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: pathlib.Path) -> bytes:
    with open(path, "rb") as fh:  # FileNotFoundError propagates as is
        raw = fh.read()
    # Sniff the gzip magic too, so a compressed file without the .gz suffix still reads.
    if path.suffix == ".gz" or raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (gzip.BadGzipFile, EOFError, zlib.error) as err:
            raise IDXFormatError(f"{path}: corrupt or truncated gzip stream ({err})") from err
    return raw


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (raw, or gzip-compressed) into a native-endian numpy array.

    :param path: file to read; compression is detected from the ``.gz`` suffix or the gzip
        magic bytes.
    :raises FileNotFoundError: when the file does not exist.
    :raises IDXFormatError: for a bad magic number, a header or payload that does not match
        the declared dimensions, or a corrupt gzip stream.

    Usage::

        images = read_idx("train-images-idx3-ubyte.gz")   # uint8, shape (60000, 28, 28)
    """
    path = pathlib.Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IDXFormatError(f"{path}: file is {len(data)} bytes, too short for an IDX header")
    if data[0] != 0 or data[1] != 0:
        raise IDXFormatError(
            f"{path}: bad magic number {data[:4].hex()} (an IDX file starts with two zero bytes)"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_CODES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_CODES)
        raise IDXFormatError(f"{path}: unknown IDX type code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise IDXFormatError(f"{path}: header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IDXFormatError(
            f"{path}: header declares {ndim} dimensions ({header_len} bytes) but the file has "
            f"only {len(data)} bytes"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = _IDX_CODES[code]
    count = math.prod(dims)
    expected = count * dtype.itemsize
    found = len(data) - header_len
    if found != expected:
        problem = "truncated" if found < expected else "has trailing bytes"
        raise IDXFormatError(
            f"{path}: payload {problem}: expected {expected} bytes for dims {dims} of {dtype}, "
            f"found {found}"
        )
    big_endian = dtype.newbyteorder(">")
    array = np.frombuffer(data, dtype=big_endian, count=count, offset=header_len)
    # astype copies, which also makes the result writable (frombuffer over bytes is read-only).
    return array.astype(dtype.newbyteorder("=")).reshape(dims)


def write_idx(path: str | os.PathLike[str], array: Any) -> None:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``.

    :param path: destination file (its folder must exist).
    :param array: array-like of dtype uint8, int8, int16, int32, float32 or float64, with 1 to
        255 dimensions.
    :raises ValueError: for an unsupported dtype or shape.

    Usage::

        write_idx("train-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    """
    path = pathlib.Path(path)
    arr = np.asarray(array)
    native = arr.dtype.newbyteorder("=")
    if native not in _IDX_DTYPES:
        names = ", ".join(str(dt) for dt in _IDX_DTYPES)
        raise ValueError(
            f"write_idx: dtype {arr.dtype} has no IDX type code; supported: {names} "
            "(cast first, e.g. labels.astype(np.uint8))"
        )
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"write_idx: IDX needs 1 to 255 dimensions, got {arr.ndim}")
    if any(s >= 2**32 for s in arr.shape):
        raise ValueError(f"write_idx: dimension too large for IDX in shape {arr.shape}")
    header = bytes([0, 0, _IDX_DTYPES[native], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = np.ascontiguousarray(arr, dtype=native.newbyteorder(">")).tobytes()
    if path.suffix == ".gz":
        # mtime=0 keeps the output byte-identical across runs.
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
            fh.write(header + payload)
    else:
        with open(path, "wb") as fh:
            fh.write(header + payload)
