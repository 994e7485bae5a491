"""Wide tables (issue 19): plain numeric columns go through every step a block of many columns at
a time, with the values the one-column path gives, bit for bit; a wide CSV's sample is typed
without pyarrow's per-column inference, and a row that contradicts the sample still reads."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from helpers import one_line_error
from mlpbp.data import columns as C
from mlpbp.data import tables as T
from mlpbp.data.preprocessing import Preprocessor, _fit_numeric
from mlpbp.data.tables import read_table
from mlpbp.data.transforms import choose, choose_many


def _columns(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Columns of every shape the auto choice tells apart: symmetric, skewed either way,
    binary, constant, with and without missing values."""
    out = {}
    for j in range(48):
        kind = j % 8
        v = {
            0: lambda: rng.normal(size=n),
            1: lambda: rng.exponential(size=n) ** 2,  # right-skewed, never negative: log1p
            2: lambda: -(rng.exponential(size=n) ** 2),  # left-skewed: quantile
            3: lambda: rng.integers(0, 2, n).astype(float),  # binary
            4: lambda: rng.lognormal(size=n),
            5: lambda: np.full(n, 3.0),  # constant
            6: lambda: rng.normal(size=n) * 1e6 + 1e9,
            7: lambda: rng.integers(-5, 50, n).astype(float),
        }[kind]()
        if j % 3 == 0:
            v[rng.random(n) < 0.1] = np.nan
        out[f"c{j}"] = v
    return out


def _table(cols: dict[str, np.ndarray], chunks: int = 3) -> pa.Table:
    """As a CSV reader gives them: several chunks a column; integers with missing cells, float32."""
    arrays = {}
    for j, (name, v) in enumerate(cols.items()):
        mask = np.isnan(v)
        if j % 8 == 7:
            a = pa.array(np.where(mask, 0, v).astype(np.int64), mask=mask)
        elif j % 8 == 6:
            a = pa.array(v.astype(np.float32), mask=mask)
        else:
            a = pa.array(np.where(mask, 0, v), mask=mask)
        cut = np.linspace(0, len(v), chunks + 1).astype(int)
        arrays[name] = pa.chunked_array([a.slice(lo, hi - lo) for lo, hi in zip(cut, cut[1:])])
    return pa.table(arrays)


def test_numeric_block_is_numeric_values_of_each_column():
    rng = np.random.default_rng(0)
    t = _table(_columns(rng, 50))
    V = C.numeric_block(t, t.column_names)
    for j, name in enumerate(t.column_names):
        np.testing.assert_array_equal(V[:, j], C.numeric_values(t.column(name), name))


@pytest.mark.parametrize(
    "column, message",
    [
        (pa.array([1.0, 2.0, float("inf")]), "f.csv: row 4, column 'b': inf is not a finite number"),
        (pa.array([1, 2**60, 3]), "f.csv: column 'b' of type int64 cannot be read as numbers"),
    ],
)
def test_numeric_block_refuses_what_numeric_values_refuses(column, message):
    t = pa.table({"a": pa.array([1.0, 2.0, 3.0]), "b": column})
    assert one_line_error(C.numeric_block, t, ["a", "b"], 2, "f.csv") == message


@pytest.mark.parametrize("n", [2, 40, 300])
def test_choose_many_is_choose_of_each_column(n):
    rng = np.random.default_rng(n)
    V = np.column_stack(list(_columns(rng, n).values()))
    chosen = choose_many(V)
    assert chosen == [choose(V[:, j]) for j in range(V.shape[1])]
    if n == 300:
        assert {"standardize", "log1p", "quantile"} <= set(chosen)


@pytest.mark.parametrize("missing", ["impute", "error"])
@pytest.mark.parametrize("numeric", ["auto", "standardize", {"c1": "quantile", "c4": "robust", "c9": "log1p"}])
@pytest.mark.parametrize("standardize", [True, False])
def test_a_block_of_columns_fits_as_each_column_alone(missing, numeric, standardize):
    """Preprocessor.fit's block path against _fit_numeric, the one-column path: the same
    transforms, fill values, means and scales, bit for bit."""
    rng = np.random.default_rng(1)
    t = _table(_columns(rng, 120))
    rows = np.sort(rng.choice(120, 90, replace=False))
    pre = Preprocessor.fit(t, t.column_names, rows, missing=missing, numeric=numeric, standardize=standardize)
    for j, (col, name) in enumerate(zip(pre.columns, t.column_names)):
        v = C.numeric_values(t.column(name), name)[rows]
        fill = None
        if missing == "impute":
            fill = float(np.nanmedian(v)) if not np.isnan(v).all() else 0.0
            v = np.where(np.isnan(v), fill, v)
        how = numeric.get(name, "auto") if isinstance(numeric, dict) else numeric
        if not standardize and how in ("auto", "standardize"):
            how = "none"
        ref, mean, scale = _fit_numeric(name, "numeric", v, fill, how, None)
        assert col.to_meta() == ref.to_meta(), name
        assert pre.mean[j] == mean[0] and pre.scale[j] == scale[0], name
    # and encoding a block at a time is encoding each column alone
    X = pre.transform(t.slice(0, 50)) if missing == "impute" else None
    if X is not None:
        for j, col in enumerate(pre.columns):
            v = C.numeric_values(t.column(col.name).slice(0, 50), col.name)
            v = np.where(np.isnan(v), col.fill, v)
            want = (col.transform.forward(v) - pre.mean[j]) / pre.scale[j]
            np.testing.assert_array_equal(X[:, j], want)


def test_a_missing_cell_is_named_by_the_block_as_by_the_column():
    t = pa.table({"a": pa.array([1.0, 2.0, 3.0]), "b": pa.array([1.0, None, 3.0]), "c": pa.array([1, 2, 3])})
    pre = Preprocessor.fit(t, ["a", "b", "c"], np.array([0, 2]))
    assert one_line_error(pre.transform, t, first_row=2, source="f.csv") == (
        "f.csv: column 'b' has 1 missing cell (first at row 3); the model was trained with data.missing: error"
        " (data.missing: impute fills them)"
    )


def _wide_csv(path, columns: int, rows: list[list[str]]) -> None:
    header = ",".join(f"c{j}" for j in range(columns))
    path.write_text(header + "\n" + "".join(",".join(r) + "\n" for r in rows))


def test_a_wide_sample_is_typed_without_inference(tmp_path):
    k = T.WIDE_COLUMNS + 5
    row = ["1.5"] * k
    row[1], row[2], row[3], row[4] = "7", "", "x", "1e3"  # an integer, empty, text, an exponent
    second = list(row)
    second[2] = "2.25"
    head = ("\n".join([",".join(f"c{j}" for j in range(k)), ",".join(row), ",".join(second)]) + "\n").encode()
    types = T._wide_types(head, ",")
    assert types["c0"] == pa.float64() and types["c4"] == pa.float64() and types["c2"] == pa.float64()
    assert types["c1"] == pa.string() and types["c3"] == pa.string()  # left to pyarrow's inference
    assert list(types) == [f"c{j}" for j in range(k)]
    assert T._wide_types(head.replace(b"x", b'"x"'), ",") is None  # quotes: pyarrow's inference
    assert T._wide_types(b"a,b,c\n1.5,2.5,3.5\n", ",") is None  # not wide


def test_a_wide_csv_reads_as_pyarrow_reads_it(tmp_path):
    """Typed from its first rows; a later row with text in a float column is read all the same
    (the typed read fails, and the whole file's inference reads it)."""
    k = T.WIDE_COLUMNS + 10
    rng = np.random.default_rng(3)
    rows = [[f"{x:.3f}" for x in rng.normal(size=k - 1)] + [str(i % 2)] for i in range(200)]
    path = tmp_path / "wide.csv"
    _wide_csv(path, k, rows)
    raw = read_table(path, float32=True)
    assert raw.table.num_rows == 200 and raw.table.num_columns == k
    assert raw.table.schema.types[0] == pa.float32() and raw.table.schema.types[-1] == pa.int64()
    np.testing.assert_array_equal(C.numeric_values(raw.table.column("c5"), "c5"), [np.float32(r[5]) for r in rows])
    rows[150][7] = "oops"
    _wide_csv(path, k, rows)
    raw = read_table(path, float32=True)
    assert pa.types.is_string(raw.table.schema.field("c7").type) and raw.table.column("c7")[150].as_py() == "oops"


def test_a_wide_row_makes_the_blocks_hold_many_rows(tmp_path):
    path = tmp_path / "w.csv"
    line = ",".join(["1.25"] * 200_000)  # ~1 MB a row: 2 MiB blocks would hold 2 rows
    path.write_text(line + "\n" + line + "\n")
    assert T._block_bytes(path, path.read_bytes()[: T.SAMPLE_BYTES]) == T.ROWS_PER_BLOCK * (len(line) + 1)
    assert T._block_bytes(path, b"a,b\n1,2\n") == T.BLOCK_BYTES
