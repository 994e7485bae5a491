"""A CSV of more than COLUMN_GROUP columns is read a group of columns at a time (issue 19: the
reader's memory grows with the columns it converts). Every path the CSV reader takes gives the
table, notes, row numbers and errors of one read of all columns, bit for bit: the group size is
forced down to 2 here, so that small tables take it."""

from __future__ import annotations

import pyarrow as pa
import pytest

from helpers import one_line_error
from mlpbp.data import csv_parts
from mlpbp.data import tables as T
from mlpbp.data.tables import read_table


def _rows(n: int = 300) -> list[str]:
    """Floats with empty and NA cells, integers with missing cells, text categories, booleans,
    dates, timestamps, a float beyond float32's precision, an id and a label."""
    lines = []
    for i in range(n):
        x = "" if i % 17 == 0 else ("NA" if i % 23 == 0 else f"{(i * 0.37) % 5 - 2.5:.7g}")
        k = "" if i % 13 == 0 else str(i * 7 - 300)
        colour = ["red", "green", "blue", ""][i % 4]
        flag = ["true", "false"][i % 2]
        day = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}"
        when = f"2024-03-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00"
        fine = f"{1 + i * 1e-9:.12f}"
        lines.append(f"r{i},{x},{k},{colour},{flag},{day},{when},{fine},nan,{i % 3}")
    return lines


HEADER = "id,x,k,colour,flag,day,when,fine,empty,label"


def _write(path, header: str = HEADER, rows: list[str] | None = None, newline: str = "\n", bom: bool = False):
    rows = _rows() if rows is None else rows
    text = newline.join([header, *rows]) + newline
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


@pytest.fixture
def grouped(monkeypatch):
    """Read with a group of 2 columns (``groups`` lists the groups of each read), or every
    column at once: ``read(path, **options)`` both ways, asserted the same."""
    seen = []
    real = T._by_groups

    def spy(groups, read, progress, ragged):
        seen.append(None if groups is None else [list(g) for g in groups[1]])
        return real(groups, read, progress, ragged)

    monkeypatch.setattr(T, "_by_groups", spy)

    def read(path, **options):
        monkeypatch.setattr(T, "COLUMN_GROUP", 10_000)
        whole = read_table(path, **options)
        monkeypatch.setattr(T, "COLUMN_GROUP", 2)
        seen.clear()
        parts = read_table(path, **options)
        assert seen and all(g is not None and max(map(len, g)) == 2 for g in seen), seen
        assert parts.table.equals(whole.table, check_metadata=True)
        assert parts.table.schema == whole.table.schema
        assert parts.notes == whole.notes and parts.stripped == whole.stripped
        assert (parts.numbers is None) == (whole.numbers is None)
        if whole.numbers is not None:
            assert parts.numbers.tolist() == whole.numbers.tolist()
        return parts

    read.seen = seen
    return read


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("bom", [False, True])
def test_a_table_read_by_groups_of_columns_is_the_table_read_at_once(tmp_path, grouped, newline, bom):
    raw = grouped(_write(tmp_path / "t.csv", newline=newline, bom=bom))
    types = dict(zip(raw.table.column_names, raw.table.schema.types))
    assert types["x"] == pa.float64() and types["k"] == pa.int64() and types["colour"] == pa.string()
    assert types["flag"] == pa.bool_() and types["day"] == pa.date32() and pa.types.is_timestamp(types["when"])
    assert raw.table.num_rows == 300 and raw.table.column("x").null_count == 18 + 13  # empty, and NA (row 0: empty)
    assert raw.table.column("colour").null_count == 75  # empty cells are missing (strings_can_be_null)


def test_float32_columns_and_the_kept_float64_ones(tmp_path, grouped):
    path = _write(tmp_path / "t.csv")
    raw = grouped(path, float32=True, keep64=["fine", "label"])
    assert raw.table.schema.field("x").type == pa.float32() and raw.table.schema.field("fine").type == pa.float64()
    grouped(path, float32=True)


def test_a_sample_typed_float_with_text_below_is_inferred_over_the_whole_file(tmp_path, grouped, monkeypatch):
    """The typed streaming read fails on the text; the whole file's inference reads every group."""
    monkeypatch.setattr(T, "SAMPLE_BYTES", 400)
    rows = _rows()
    fields = rows[280].split(",")
    fields[1] = "oops"
    rows[280] = ",".join(fields)
    raw = grouped(_write(tmp_path / "t.csv", rows=rows))
    assert raw.table.schema.field("x").type == pa.string() and raw.table.column("x")[280].as_py() == "oops"


def test_parts_in_threads_and_blocks_of_few_rows(tmp_path, grouped, monkeypatch):
    monkeypatch.setattr(T, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(T, "_usable_cores", lambda: 3)
    path = _write(tmp_path / "t.csv")
    grouped(path)
    monkeypatch.setattr(T, "BLOCK_BYTES", 256)  # many record batches a column
    monkeypatch.setattr(T, "ROWS_PER_BLOCK", 1)
    assert grouped(path).table.column("x").num_chunks > 10


def test_a_cell_longer_than_a_block_grows_the_blocks_for_every_group(tmp_path, grouped, monkeypatch):
    monkeypatch.setattr(T, "BLOCK_BYTES", 256)
    monkeypatch.setattr(T, "ROWS_PER_BLOCK", 1)
    rows = _rows(40)
    fields = rows[30].split(",")
    fields[3] = "c" * 5000
    rows[30] = ",".join(fields)
    raw = grouped(_write(tmp_path / "t.csv", rows=rows))
    assert len(raw.table.column("colour")[30].as_py()) == 5000


def test_bad_lines_skipped_keep_their_numbers_and_are_counted_once(tmp_path, grouped):
    rows = _rows()
    rows[10] += ",extra"
    rows[200] = "short,row"
    raw = grouped(_write(tmp_path / "t.csv", rows=rows), bad_lines="skip")
    assert raw.notes[0].startswith("t.csv: skipped 2 bad line(s) (data.bad_lines: skip); the first: row 12 has")
    assert raw.table.num_rows == 298 and raw.numbers[10] == 13


@pytest.mark.parametrize("parts", [1, 3])
def test_a_bad_line_is_refused_with_the_same_line(tmp_path, monkeypatch, parts):
    monkeypatch.setattr(T, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(T, "_usable_cores", lambda: parts)
    rows = _rows()
    rows[250] += ",extra"
    path = _write(tmp_path / "t.csv", rows=rows)
    whole = one_line_error(read_table, path)
    monkeypatch.setattr(T, "COLUMN_GROUP", 2)
    assert (
        one_line_error(read_table, path) == whole == f"{path}: cannot read as CSV: row 252 has 11 fields, header has 10"
    )


def test_spaces_in_names_a_pandas_index_and_a_repeated_name(tmp_path, grouped, monkeypatch):
    raw = grouped(_write(tmp_path / "t.csv", header=HEADER.replace("x,", " x ,"), rows=[f"{r}" for r in _rows()]))
    assert raw.stripped == {" x ": "x"} and "x" in raw.table.column_names
    rows = [f"{i},{r}" for i, r in enumerate(_rows())]
    raw = grouped(_write(tmp_path / "p.csv", header="," + HEADER, rows=rows))
    assert raw.table.column_names == HEADER.split(",") and "a pandas index" in raw.notes[-1]
    path = _write(tmp_path / "d.csv", header=HEADER.replace("k,", "x,"))
    monkeypatch.setattr(T, "COLUMN_GROUP", 2)
    assert T._column_groups(path, path.read_bytes()[:100], ",") is None  # pyarrow's own read refuses it
    assert one_line_error(read_table, path) == f"{path}: column name 'x' appears twice in the header"


def test_a_header_with_quotes_or_not_utf8_is_read_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(T, "COLUMN_GROUP", 2)
    quoted = _write(tmp_path / "q.csv", header=HEADER.replace("colour", '"colour, of it"'))
    assert T._column_groups(quoted, quoted.read_bytes()[:100], ",") is None
    assert '"colour, of it"'.strip('"') in read_table(quoted).table.column_names
    plain = _write(tmp_path / "t.csv")
    names, groups = T._column_groups(plain, plain.read_bytes()[:100], ",")
    assert names == HEADER.split(",") and groups == [names[i : i + 2] for i in range(0, 10, 2)]
    monkeypatch.setattr(T, "COLUMN_GROUP", 10)  # 10 columns: up to COLUMN_GROUP, read at once
    assert T._column_groups(plain, plain.read_bytes(), ",") is None


def test_a_wide_header_beyond_the_sample(tmp_path, monkeypatch):
    """A header longer than the sample is read from the file; the sample's types still apply."""
    k = T.WIDE_COLUMNS + 20
    header = ",".join(f"column_{j}_with_a_name_long_enough_that_the_header_is_longer_than_the_sample" for j in range(k))
    rows = [",".join(f"{(i + j) * 0.25:.2f}" for j in range(k - 1)) + f",{i % 2}" for i in range(30)]
    path = _write(tmp_path / "w.csv", header=header, rows=rows)
    assert len(header) > T.SAMPLE_BYTES
    whole = read_table(path, float32=True).table
    monkeypatch.setattr(T, "COLUMN_GROUP", 300)
    seen = []
    real = csv_parts.stream_csv
    monkeypatch.setattr(T, "stream_csv", lambda *a, **kw: seen.append(a[7]) or real(*a, **kw))
    assert read_table(path, float32=True).table.equals(whole)
    assert [len(g) for g in seen] == [300] * 3 + [k - 900]
    assert whole.schema.types[0] == pa.float32() and whole.schema.types[-1] == pa.int64()


def test_progress_runs_to_the_end_once_over_the_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(T, "COLUMN_GROUP", 2)
    monkeypatch.setattr(T, "BLOCK_BYTES", 512)
    monkeypatch.setattr(T, "ROWS_PER_BLOCK", 1)
    seen = []
    read_table(_write(tmp_path / "t.csv"), progress=lambda rows, done: seen.append(done))
    assert seen == sorted(seen) and seen[-1] == 1.0 and min(seen) < 0.2
