"""Reading and writing ``.npy`` arrays without holding them in memory.

* :func:`iter_npz_arrays` streams the members of an ``.npz`` (compressed or not) into
  memory-mapped ``.npy`` files chunk by chunk, so converting a multi-GB npz never needs the
  array in RAM (``np.load(mmap_mode=...)`` is silently ignored for npz files).
* Object arrays are refused: nothing is ever unpickled from a file.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy_format

from pd4ml.errors import ConversionError, DiskFullError
from pd4ml.fetch.diskspace import (
    disk_full_as_error,
    disk_full_error,
    ensure_free_space,
    free_bytes,
    is_disk_full,
)

_COPY_CHUNK = 16 << 20


@dataclass(frozen=True)
class NpyHeader:
    """Shape, dtype and memory order of an array stored in ``.npy`` format."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    fortran_order: bool


def read_npy_header(stream: IO[bytes], where: str) -> NpyHeader:
    """Parse the header of a ``.npy`` stream positioned at its start."""
    try:
        major, _minor = npy_format.read_magic(stream)
        if major == 1:
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(stream)
        elif major in (2, 3):
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy format version {major}")
    except (ValueError, OSError, EOFError) as error:
        raise ConversionError(f"{where}: not a valid .npy array ({error})") from None
    if dtype.hasobject:
        raise ConversionError(f"{where}: holds Python objects; refusing to unpickle from a file")
    return NpyHeader(tuple(int(n) for n in shape), dtype, bool(fortran_order))


def npz_headers(path: Path) -> dict[str, NpyHeader]:
    """Shapes and dtypes of every array in an npz, reading only the headers."""
    headers: dict[str, NpyHeader] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                if not member.filename.endswith(".npy"):
                    continue
                with archive.open(member) as stream:
                    name = member.filename[: -len(".npy")]
                    headers[name] = read_npy_header(stream, f"{path.name}:{member.filename}")
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ConversionError(f"{path}: not a readable .npz archive ({error})") from None
    return headers


def reserve(handle: int, path: Path, offset: int, length: int) -> None:
    """Reserve ``length`` bytes of disk from ``offset`` in the open file ``handle``.

    File systems without ``fallocate`` get a free-space check instead.
    """
    if length <= 0:
        return
    try:
        os.posix_fallocate(handle, offset, length)
    except OSError as error:
        if is_disk_full(error):
            raise disk_full_error(path, needed=length, free=free_bytes(path.parent)) from error
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        ensure_free_space(path, length)


def allocate_npy(
    path: Path,
    shape: Sequence[int],
    dtype: np.dtype[Any] | type | str,
    fortran_order: bool = False,
) -> np.memmap[Any, Any]:
    """A writable memory-mapped ``.npy`` at ``path`` with its disk space reserved up front.

    The header is written with ordinary file I/O and the data blocks are allocated before the
    map is made, so filling the map can never fault on a full disk.
    """
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    header = {
        "descr": npy_format.dtype_to_descr(dtype),
        "fortran_order": fortran_order,
        "shape": shape,
    }
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    with disk_full_as_error(path, nbytes), open(path, "wb") as handle:
        npy_format.write_array_header_2_0(handle, header)
        offset = handle.tell()
        handle.flush()
        reserve(handle.fileno(), path, offset, nbytes)
    if nbytes == 0:  # nothing to map: an empty array (the file is already complete)
        return np.zeros(shape, dtype=dtype).view(np.memmap)
    if fortran_order:
        return np.memmap(path, dtype=dtype, mode="r+", offset=offset, shape=shape, order="F")
    return np.memmap(path, dtype=dtype, mode="r+", offset=offset, shape=shape, order="C")


def copy_npz_member(path: Path, name: str, destination: Path) -> np.memmap[Any, Any]:
    """Stream array ``name`` of the npz at ``path`` into the ``.npy`` file ``destination``.

    Returns the destination opened read-only as a memory map. Raises :class:`ConversionError`
    naming the file when the member is missing, truncated or corrupted.
    """
    where = f"{path.name}:{name}"
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                member = archive.getinfo(f"{name}.npy")
            except KeyError:
                raise ConversionError(f"{path}: has no array {name!r}") from None
            with archive.open(member) as stream:
                header = read_npy_header(stream, where)
                output = allocate_npy(destination, header.shape, header.dtype, header.fortran_order)
                target = np.frombuffer(output, dtype=np.uint8) if output.size else None
                expected = output.nbytes
                copied = 0
                while copied < expected and target is not None:
                    block = stream.read(min(_COPY_CHUNK, expected - copied))
                    if not block:
                        break
                    target[copied : copied + len(block)] = np.frombuffer(block, dtype=np.uint8)
                    copied += len(block)
                output.flush()
                del target, output
                if copied != expected:
                    raise ConversionError(
                        f"{where}: truncated, {copied} of {expected} bytes of array data"
                    )
    except DiskFullError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        if is_disk_full(error):
            raise disk_full_error(
                destination, needed=None, free=free_bytes(destination.parent)
            ) from error
        raise ConversionError(f"{path}: cannot read array {name!r} ({error})") from None
    loaded: np.memmap[Any, Any] = np.load(destination, mmap_mode="r", allow_pickle=False)
    return loaded


def release_rows(array: np.ndarray, start: int, stop: int) -> None:
    """Drop rows ``start:stop`` of a memory-mapped array from this process's resident memory.

    The pages stay in the page cache (and dirty pages of a writable map are still written to
    the file); only the mapping's resident set shrinks, so a chunked pass over a large
    memory map keeps its peak RSS bounded by the chunk size instead of the array size.
    Does nothing for arrays that are not memory maps.
    """
    base: Any = array
    while base is not None and not isinstance(getattr(base, "_mmap", None), mmap.mmap):
        base = getattr(base, "base", None)
    if base is None or array.ndim == 0 or not array.flags.c_contiguous:
        return
    handle: mmap.mmap = base._mmap
    row_bytes = array.strides[0]
    data_start = array.__array_interface__["data"][0]
    map_start = np.frombuffer(handle, dtype=np.uint8).__array_interface__["data"][0]
    offset = data_start - map_start + start * row_bytes
    length = (stop - start) * row_bytes
    page = mmap.PAGESIZE
    aligned = (offset // page) * page
    length += offset - aligned
    if length <= 0:
        return
    # no flush needed: for a shared file mapping, dropping the pages from this process keeps
    # dirty data in the page cache, from where the kernel writes it back as usual
    with contextlib.suppress(OSError, ValueError):
        handle.madvise(mmap.MADV_DONTNEED, aligned, min(length, len(handle) - aligned))
