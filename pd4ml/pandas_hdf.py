"""Read pandas ``DataFrame.to_hdf`` files with h5py alone (no pandas, no PyTables, no pickle).

pandas writes two layouts:

* **fixed** (``pandas_type = "frame"``): ``<key>/axis0`` holds the column names,
  ``<key>/block{i}_items`` the names of the columns in block ``i`` and ``<key>/block{i}_values``
  an ``(n_rows, n_columns_in_block)`` array; blocks group columns by dtype.
* **table** (``pandas_type = "frame_table"``): ``<key>/table`` is a compound dataset with an
  ``index`` field, one ``values_block_{i}`` field of shape ``(n_columns_in_block,)`` per dtype
  block, and one field per ``data_columns`` column. The column names of a block are stored in the
  attribute ``values_block_{i}_kind`` as a protocol-0 pickle of a list of strings.

The block order depends on the dtypes written, so columns are always mapped by name. Those
pickled name lists are decoded by :func:`parse_pickled_names`, a parser for the handful of
protocol-0 opcodes such a list uses, which refuses everything else: nothing is ever unpickled.
Files compressed with blosc (PyTables' favourite) are read through the ``hdf5plugin`` filters.
"""

from __future__ import annotations

import codecs
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pd4ml.errors import ConversionError


def parse_pickled_names(data: bytes) -> list[Any]:
    """Decode a protocol-0 pickle made of lists, tuples, ints and strings; refuse anything else.

    >>> parse_pickled_names(b"(lp0\\nVE_0\\np1\\naVPX_0\\np2\\na.")
    ['E_0', 'PX_0']
    """
    stack: list[Any] = []
    marks: list[int] = []
    memo: dict[str, Any] = {}
    for line in data.split(b"\n"):
        while line:
            opcode, line = line[:1], line[1:]
            if opcode == b"(":
                marks.append(len(stack))
            elif opcode in (b"l", b"t", b"d"):
                start = marks.pop()
                items = stack[start:]
                del stack[start:]
                if opcode == b"l":
                    stack.append(list(items))
                elif opcode == b"t":
                    stack.append(tuple(items))
                else:
                    stack.append(dict(zip(items[::2], items[1::2], strict=True)))
            elif opcode in (b"V", b"S", b"I", b"L", b"F", b"p", b"g"):
                argument, line = line, b""
                text = argument.decode("latin-1")
                if opcode == b"V":
                    stack.append(codecs.decode(argument, "raw_unicode_escape"))
                elif opcode == b"S":
                    if len(text) < 2 or text[0] not in "'\"" or text[-1] != text[0]:
                        raise ValueError(f"bad string literal {text!r}")
                    stack.append(codecs.decode(text[1:-1], "unicode_escape"))
                elif opcode in (b"I", b"L"):
                    stack.append(int(text.rstrip("L")))
                elif opcode == b"F":
                    stack.append(float(text))
                elif opcode == b"p":
                    memo[text] = stack[-1]
                else:
                    stack.append(memo[text])
            elif opcode == b"N":
                stack.append(None)
            elif opcode == b"a":
                item = stack.pop()
                stack[-1].append(item)
            elif opcode == b"s":
                value = stack.pop()
                key = stack.pop()
                stack[-1][key] = value
            elif opcode == b".":
                if len(stack) != 1:
                    raise ValueError("malformed pickle")
                return stack[0]  # type: ignore[no-any-return]
            else:
                raise ValueError(f"refusing pickle opcode {opcode!r}")
    raise ValueError("pickle without STOP")


@dataclass(frozen=True)
class _ColumnSource:
    dataset: str  # path of the h5py dataset within the file
    field: str | None  # compound field (table format) or None (fixed format)
    position: int | None  # column inside a block, None for a scalar data column


class PandasHdf:
    """A pandas HDF5 frame opened with h5py. Use as a context manager.

    ``columns`` lists the column names, ``n_rows`` the number of rows, ``layout`` is
    ``"fixed"`` or ``"table"``. :meth:`read` returns chosen columns for a row range.
    """

    def __init__(self, path: str | Path, key: str = "table") -> None:
        self.path = Path(path)
        _register_compression_filters()
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as error:
            raise ConversionError(f"{self.path}: not a readable HDF5 file ({error})") from None
        try:
            if key not in self._file:
                raise ConversionError(f"{self.path}: no pandas frame under key {key!r}")
            self._group = self._file[key]
            pandas_type = _attribute_text(self._group, "pandas_type")
            if pandas_type == "frame_table":
                self.layout = "table"
                self._sources, self.columns, self.n_rows = self._index_table()
            elif pandas_type == "frame":
                self.layout = "fixed"
                self._sources, self.columns, self.n_rows = self._index_fixed()
            else:
                raise ConversionError(
                    f"{self.path}: {key!r} is not a pandas DataFrame (pandas_type {pandas_type!r})"
                )
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> PandasHdf:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def _index_table(self) -> tuple[dict[str, _ColumnSource], list[str], int]:
        if "table" not in self._group:
            raise ConversionError(f"{self.path}: table-format frame without its 'table' dataset")
        table = self._group["table"]
        dataset = table.name
        sources: dict[str, _ColumnSource] = {}
        for field in table.dtype.names or ():
            if field == "index":
                continue
            if field.startswith("values_block_"):
                names = self._pickled_attribute(table, f"{field}_kind")
                for position, name in enumerate(names):
                    sources[str(name)] = _ColumnSource(dataset, field, position)
            else:
                sources[field] = _ColumnSource(dataset, field, None)
        order = list(sources)
        if "non_index_axes" in self._group.attrs:
            axes = self._pickled_attribute(self._group, "non_index_axes")
            if axes and isinstance(axes[0], tuple) and len(axes[0]) == 2:
                order = [str(name) for name in axes[0][1]]
        return sources, order, int(table.shape[0])

    def _index_fixed(self) -> tuple[dict[str, _ColumnSource], list[str], int]:
        group = self._group
        sources: dict[str, _ColumnSource] = {}
        n_blocks = int(group.attrs.get("nblocks", 0))
        n_rows: int | None = None
        for block in range(n_blocks):
            items = [_decode(name) for name in group[f"block{block}_items"][()]]
            values = group[f"block{block}_values"]
            if values.ndim != 2 or values.shape[1] != len(items):
                raise ConversionError(f"{self.path}: block{block}_values has shape {values.shape}")
            n_rows = values.shape[0] if n_rows is None else n_rows
            for position, name in enumerate(items):
                sources[name] = _ColumnSource(values.name, None, position)
        order = (
            [_decode(name) for name in group["axis0"][()]] if "axis0" in group else list(sources)
        )
        return sources, order, int(n_rows or 0)

    def _pickled_attribute(self, node: Any, name: str) -> Any:
        raw = node.attrs.get(name)
        if raw is None:
            raise ConversionError(f"{self.path}: missing attribute {name!r}")
        try:
            return parse_pickled_names(bytes(raw))
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise ConversionError(
                f"{self.path}: cannot decode attribute {name!r}: {error}"
            ) from None

    def read(
        self,
        columns: Sequence[str],
        start: int = 0,
        stop: int | None = None,
        dtype: np.dtype[Any] | type = np.float32,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Columns ``columns`` of rows ``start:stop`` as an ``(n_rows, len(columns))`` array.

        Only the columns asked for are read: in the fixed layout the span of a block's columns
        between the first and the last one wanted, in the table layout the compound fields
        that hold them. With ``out`` (an ``(n_rows, len(columns))`` array, e.g. rows of a
        memory-mapped output; its dtype replaces ``dtype``) the values are written there and
        ``out`` is returned: a run of consecutive columns of a fixed-layout block with the
        dtype of ``out`` goes from the file into ``out`` without an intermediate copy. Values
        are cast as NumPy assignment casts them.
        """
        stop = self.n_rows if stop is None else min(stop, self.n_rows)
        missing = [name for name in columns if name not in self._sources]
        if missing:
            shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
            raise ConversionError(f"{self.path}: missing column(s) {shown}")
        shape = (max(stop - start, 0), len(columns))
        if out is None:
            output = np.empty(shape, dtype=dtype)
        elif out.shape != shape:
            raise ValueError(f"out has shape {out.shape}, rows {start}:{stop} need {shape}")
        else:
            output = out
        by_block: dict[tuple[str, str | None], list[tuple[int, int | None]]] = {}
        for index, name in enumerate(columns):
            source = self._sources[name]
            by_block.setdefault((source.dataset, source.field), []).append((index, source.position))
        if shape[0] == 0:
            return output
        try:
            for (dataset_name, field), targets in by_block.items():
                dataset = self._file[dataset_name]
                if field is None:
                    self._read_fixed_block(dataset, targets, start, stop, output)
                    continue
                block = np.asarray(
                    dataset.fields(field)[start:stop]
                    if dataset.dtype.names
                    else dataset[start:stop]
                )
                _scatter(output, targets, block)
        except (OSError, ValueError) as error:
            raise ConversionError(
                f"{self.path}: cannot read rows {start}:{stop} ({error}); the file may be "
                "truncated or corrupted"
            ) from None
        return output

    @staticmethod
    def _read_fixed_block(
        dataset: Any,
        targets: list[tuple[int, int | None]],
        start: int,
        stop: int,
        output: np.ndarray,
    ) -> None:
        """Columns ``targets`` (output index, block position) of an ``(n_rows, n_columns)``
        block, reading only the block's columns from the first to the last one wanted."""
        positions = [position for _, position in targets if position is not None]
        first, last = min(positions), max(positions) + 1
        run = _consecutive_run(targets)
        if (
            run is not None
            and dataset.dtype == output.dtype
            and output.flags.c_contiguous
            and output.flags.writeable
        ):
            (index, position), width = run
            dataset.read_direct(
                output,
                np.s_[start:stop, position : position + width],
                np.s_[:, index : index + width],
            )
            return
        block = np.asarray(dataset[start:stop, first:last])
        shifted = [
            (index, None if position is None else position - first) for index, position in targets
        ]
        _scatter(output, shifted, block)


def _consecutive_run(
    targets: list[tuple[int, int | None]],
) -> tuple[tuple[int, int], int] | None:
    """``((first output index, first position), width)`` when ``targets`` are consecutive
    output columns taken from consecutive block positions, else None."""
    index, position = targets[0]
    if position is None:
        return None
    for offset, (other_index, other_position) in enumerate(targets):
        if other_index != index + offset or other_position != position + offset:
            return None
    return (index, position), len(targets)


def _scatter(output: np.ndarray, targets: list[tuple[int, int | None]], block: np.ndarray) -> None:
    """``output[:, index] = block[:, position]`` for each target (the whole ``block`` for a
    scalar column, position None); a consecutive run is one slice assignment."""
    run = _consecutive_run(targets)
    if run is not None:
        (first_index, first_position), width = run
        output[:, first_index : first_index + width] = block[
            :, first_position : first_position + width
        ]
        return
    for index, position in targets:
        output[:, index] = block if position is None else block[:, position]


def _decode(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _attribute_text(node: Any, name: str) -> str:
    value = node.attrs.get(name)
    return _decode(value) if value is not None else ""


_FILTERS_REGISTERED = False


def _register_compression_filters() -> None:
    """Make blosc/lz4/zstd-compressed HDF5 readable (PyTables writes blosc by default)."""
    global _FILTERS_REGISTERED
    if not _FILTERS_REGISTERED:
        with contextlib.suppress(ImportError):
            import hdf5plugin  # noqa: F401  (registers the filters on import)
        _FILTERS_REGISTERED = True
