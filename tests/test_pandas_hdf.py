"""h5py-only reading of pandas HDF5 frames, both layouts, compared with pandas itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pd4ml.errors import ConversionError
from pd4ml.pandas_hdf import PandasHdf, parse_pickled_names
from tests.conftest import shared_file


def top_like_frame(n_rows: int, seed: int, float_dtype: str = "float32") -> pd.DataFrame:
    generator = np.random.default_rng(seed)
    columns = [f"{name}_{i}" for i in range(5) for name in ("E", "PX", "PY", "PZ")]
    frame = pd.DataFrame(
        generator.normal(size=(n_rows, len(columns))).astype(float_dtype), columns=columns
    )
    frame["truthE"] = generator.normal(size=n_rows).astype(float_dtype)
    frame["ttv"] = np.zeros(n_rows, dtype=np.int64)
    frame["is_signal_new"] = generator.integers(0, 2, n_rows)
    return frame


@pytest.mark.parametrize("layout", ["fixed", "table"])
@pytest.mark.parametrize("float_dtype", ["float32", "float64"])
def test_both_layouts_match_pandas(tmp_path: Path, layout: str, float_dtype: str) -> None:
    frame = top_like_frame(300, seed=1, float_dtype=float_dtype)
    # a column order that differs from the dtype-block order pandas stores
    frame = frame[["is_signal_new", *frame.columns[:-1]]]
    path = tmp_path / f"{layout}.h5"
    frame.to_hdf(path, key="table", format=layout, complevel=3 if layout == "table" else 0)
    with PandasHdf(path) as reader:
        assert reader.layout == layout and reader.n_rows == 300
        assert reader.columns == list(frame.columns)
        wanted = ["PZ_4", "E_0", "is_signal_new", "truthE"]
        np.testing.assert_array_equal(
            reader.read(wanted, 10, 50, dtype=np.float64), frame[wanted].to_numpy(np.float64)[10:50]
        )
        labels = reader.read(["is_signal_new"], dtype=np.int64)[:, 0]
        np.testing.assert_array_equal(labels, frame["is_signal_new"].to_numpy())


def test_table_with_data_columns(tmp_path: Path) -> None:
    frame = top_like_frame(50, seed=2)
    path = tmp_path / "data_columns.h5"
    frame.to_hdf(path, key="table", format="table", data_columns=["ttv", "E_0"])
    with PandasHdf(path) as reader:
        np.testing.assert_array_equal(
            reader.read(["E_0", "ttv", "PX_1"])[:, 0], frame["E_0"].to_numpy()
        )
        np.testing.assert_array_equal(reader.read(["PX_1"])[:, 0], frame["PX_1"].to_numpy())


PYTHIA_SAMPLE_NAME = ("toptagging", "pythia8_particle_level_4k.h5")


def test_real_pythia_sample_in_official_layout() -> None:
    sample = shared_file(*PYTHIA_SAMPLE_NAME)
    frame = pd.read_hdf(sample, "table")
    with PandasHdf(sample) as reader:
        assert reader.layout == "table" and reader.n_rows == 4000 and len(reader.columns) == 806
        columns = [f"{c}_{i}" for i in range(200) for c in ("E", "PX", "PY", "PZ")]
        np.testing.assert_array_equal(
            reader.read(columns[:40], 0, 1000), frame[columns[:40]].to_numpy(np.float32)[:1000]
        )


def test_missing_column_and_key_are_named(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    top_like_frame(10, seed=3).to_hdf(path, key="table", format="table")
    with (
        PandasHdf(path) as reader,
        pytest.raises(ConversionError, match=r"missing column\(s\) PZ_199"),
    ):
        reader.read(["PZ_199"])
    with pytest.raises(ConversionError, match="no pandas frame under key 'other'"):
        PandasHdf(path, key="other")


def test_truncated_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    top_like_frame(2000, seed=4).to_hdf(path, key="table", format="table")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ConversionError, match=r"truncated\.h5"), PandasHdf(truncated) as reader:
        reader.read(reader.columns)


def test_pickle_parser_handles_pandas_lists_and_refuses_code() -> None:
    assert parse_pickled_names(b"(lp0\nVE_0\np1\naVPX_0\np2\na.") == ["E_0", "PX_0"]
    assert parse_pickled_names(b"(lp0\n(I1\n(lp1\nVa\np2\naVb\np3\natp4\na.") == [(1, ["a", "b"])]
    assert parse_pickled_names(b"(lp0\nS'x'\np1\nag1\na.") == ["x", "x"]
    with pytest.raises(ValueError, match="refusing"):
        parse_pickled_names(b"cos\nsystem\n(S'echo hi'\ntR.")


@pytest.mark.parametrize("layout", ["fixed", "table"])
def test_read_into_an_output_array_and_column_spans(tmp_path: Path, layout: str) -> None:
    frame = top_like_frame(120, seed=3)
    path = tmp_path / f"{layout}.h5"
    frame.to_hdf(path, key="table", format=layout)
    momenta = [name for name in frame.columns if name[:2] in ("E_", "PX", "PY", "PZ")]
    with PandasHdf(path) as reader:
        out = np.full((40, len(momenta)), -1.0, dtype=np.float32)
        assert reader.read(momenta, 30, 70, out=out) is out  # a consecutive run
        np.testing.assert_array_equal(out, frame[momenta].to_numpy()[30:70])
        scattered = ["PZ_4", "truthE", "E_1", "ttv", "E_0"]  # reversed, gaps, two blocks
        into = np.zeros((20, len(scattered)), dtype=np.float64)
        reader.read(scattered, 100, 200, out=into)  # stop past the end is clipped
        np.testing.assert_array_equal(into, frame[scattered].to_numpy(np.float64)[100:])
        labels = reader.read(["is_signal_new"], 5, 25, dtype=np.int8)
        assert labels.dtype == np.int8
        np.testing.assert_array_equal(labels[:, 0], frame["is_signal_new"].to_numpy()[5:25])
        assert reader.read(momenta, 50, 50).shape == (0, len(momenta))
        with pytest.raises(ValueError, match=r"out has shape \(3, 20\)"):
            reader.read(momenta, 0, 4, out=np.zeros((3, 20), dtype=np.float32))
