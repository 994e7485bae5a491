"""The memory a CSV's read takes, estimated from its first lines before it is read (issue 19):
rows and columns from the sample, the table from its cells' kinds, never below the table read."""

from __future__ import annotations

import numpy as np
import pytest

from mlpbp.data import tables as T
from mlpbp.data.tables import read_estimate, read_table


def _csv(path, rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    with path.open("w") as f:
        f.write("a,b,n,colour,label\n")
        for i in range(rows):
            a = "" if i % 11 == 0 else f"{rng.normal():.6f}"
            colour = ["red", "green", "a longer category name"][i % 3]
            f.write(f"{a},{rng.normal():.3e},{rng.integers(0, 1000)},{colour},{i % 2}\n")
    return path


@pytest.mark.parametrize("float32", [False, True])
def test_a_small_file_is_measured_whole(tmp_path, float32):
    path = _csv(tmp_path / "t.csv", 50)
    est = read_estimate(path, float32=float32)
    assert (est.rows, est.columns, est.numeric_columns) == (50, 5, 4)
    # a float32 float 4 bytes, numbers 8, the text its mean length and 4 of offset, a bit a cell
    text = 4 + np.mean([len(["red", "green", "a longer category name"][i % 3]) for i in range(50)])
    per_row = (4 + 4 if float32 else 16) + 8 + 8 + max(8, text) + 5 / 8
    assert est.table_bytes == int(50 * per_row)
    size = path.stat().st_size
    assert est.read_bytes == int(est.table_bytes + T.READ_FILE_FACTOR * size + 5 * T.READ_COLUMN_BYTES)
    assert est.describe() == "50 rows x 5 columns, estimated from its first lines"


def test_a_large_file_s_rows_are_estimated_and_its_table_never_exceeds_the_estimate(tmp_path):
    path = _csv(tmp_path / "t.csv", 60_000)
    assert path.stat().st_size > 10 * T.SAMPLE_BYTES
    for float32 in (False, True):
        est = read_estimate(path, float32=float32)
        assert abs(est.rows - 60_000) < 600 and est.columns == 5
        table = read_table(path, float32=float32).table
        assert table.nbytes <= est.table_bytes <= 1.5 * table.nbytes


def test_a_wide_header_beyond_the_sample(tmp_path):
    k = 30_000
    path = tmp_path / "w.csv"
    path.write_text(
        ",".join(f"column{j}" for j in range(k)) + "\n" + "".join(",".join(["1.5"] * k) + "\n" for _ in range(3))
    )
    est = read_estimate(path, float32=True, keep64=[])
    assert (est.rows, est.columns, est.numeric_columns) == (3, k, k)
    assert est.table_bytes == int(3 * (4 * k + k / 8))
    assert est.read_bytes > k * T.READ_COLUMN_BYTES


def test_files_not_estimated(tmp_path):
    assert read_estimate(tmp_path / "missing.csv") is None
    assert read_estimate(tmp_path / "x.parquet") is None
    (tmp_path / "empty.csv").write_text("")
    assert read_estimate(tmp_path / "empty.csv") is None  # read_table says what is wrong
    (tmp_path / "bad.npz").write_bytes(b"PK not a zip")
    assert read_estimate(tmp_path / "bad.npz") is None
    np.savez(tmp_path / "noy.npz", X=np.zeros((3, 2)))
    assert read_estimate(tmp_path / "noy.npz") is None


@pytest.mark.parametrize("float32", [False, True])
@pytest.mark.parametrize("groups", [None, 5_000])
def test_parquet_from_its_metadata(tmp_path, float32, groups):
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pacsv.read_csv(_csv(tmp_path / "t.csv", 20_000)), path, row_group_size=groups)
    est = read_estimate(path, float32=float32)
    assert (est.rows, est.columns, est.numeric_columns) == (20_000, 5, 4) and est.basis == "its metadata"
    table = read_table(path).table
    assert table.nbytes <= est.table_bytes <= 1.1 * table.nbytes
    assert est.read_bytes >= T.PARQUET_READ_FACTOR * est.table_bytes


@pytest.mark.parametrize("kind", ["npz", "compressed npz", "npy"])
def test_arrays_from_their_headers(tmp_path, kind):
    X, y = np.ones((1000, 7)), np.arange(1000)
    if kind == "npy":
        np.save(tmp_path / "X.npy", X)
        np.save(tmp_path / "y.npy", y)
        path = tmp_path / "X.npy"
    else:
        path = tmp_path / "a.npz"
        (np.savez_compressed if kind == "compressed npz" else np.savez)(path, X=X, y=y)
    est = read_estimate(path)
    assert (est.rows, est.columns, est.numeric_columns) == (1000, 8, 8) and est.basis == "its arrays' headers"
    assert est.table_bytes == X.nbytes + y.nbytes == read_table(path).table.nbytes
    assert est.read_bytes == 2 * X.nbytes + 2 * X.size + 2 * y.nbytes + 8 * T.READ_COLUMN_BYTES
    assert read_estimate(path, float32=True).table_bytes == X.nbytes // 2 + y.nbytes
