"""Real-world cells: missing-value tokens, dates and times written as text, a numeric column with
a few words, bad lines, header names with spaces, rare and unseen categories, imputation notes,
a separate test file and the split written out. Each case checks its exact line."""

from __future__ import annotations

import numpy as np
import pyarrow.csv as pacsv
import pytest
import yaml

from helpers import one_line_error
from mlpbp.cli import app
from mlpbp.data.cells import RECOGNISED, time_features
from mlpbp.run.config import config_from_dict
from mlpbp.run.prepare import prepare


def prepared(tmp_path, **data):
    return prepare(config_from_dict({"data": data}, base_dir=tmp_path), dtype="float64")


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def table(header: str, rows: list[str]) -> str:
    return header + "\n" + "\n".join(rows) + "\n"


def labels(n: int) -> list[str]:
    return ["yes" if i % 3 else "no" for i in range(n)]


def test_na_values_tokens_are_missing_and_the_column_numeric(tmp_path):
    rows = [f"{'?' if i in (3, 7) else i},{y}" for i, y in zip(range(30), labels(30))]
    write(tmp_path, "t.csv", table("age,y", rows))
    p = prepared(tmp_path, path="t.csv", target="y", na_values=["?"])
    (col,) = p.preprocessor.columns
    assert col.kind == "numeric" and col.fill is not None
    assert "column 'age': 2 cell(s) read as missing (data.na_values), and the column is numeric" in p.notes
    assert "column 'age': 2 missing cell(s) filled with the training median" in " ".join(p.notes)


def test_pandas_default_tokens_are_missing_without_a_key(tmp_path):
    # '<NA>' and 'None' are in pandas' default list, not in pyarrow's
    rows = [f"{'None' if i == 4 else ('<NA>' if i == 5 else i)},{y}" for i, y in zip(range(20), labels(20))]
    write(tmp_path, "t.csv", table("a,y", rows))
    p = prepared(tmp_path, path="t.csv", target="y")
    assert p.preprocessor.columns[0].kind == "numeric"
    assert p.summary["columns"][0]["missing"] == 2


def test_a_numeric_column_with_a_few_text_cells_names_them_and_the_fix(tmp_path):
    rows = [f"{v},{y}" for v, y in zip([*range(12), "unknown", 13, "?", 15, 16, 17, 18, 19], labels(20))]
    write(tmp_path, "t.csv", table("age,y", rows))
    message = one_line_error(prepared, tmp_path, path="t.csv", target="y")
    assert message == (
        "t.csv: column 'age' is numeric but 2 of its 20 cells are not numbers: 'unknown' (row 14), '?' (row 16);"
        " list such tokens in data.na_values to read them as missing, or set data.columns: {age: categorical}"
    )
    p = prepared(tmp_path, path="t.csv", target="y", na_values=["unknown", "?"])
    assert p.preprocessor.columns[0].kind == "numeric"
    p = prepared(tmp_path, path="t.csv", target="y", columns={"age": "categorical"})
    assert p.preprocessor.columns[0].kind == "categorical"


@pytest.mark.parametrize(
    ("cells", "delimiter", "written", "plain"),
    [
        (["1,234", "987", "12,500"] * 7, ",", "numbers written with a comma such as '1,234' (row 2)", "1234.5"),
        (["10,42", "3,5", "7"] * 7, ";", "numbers written with a comma such as '10,42' (row 2)", "1234.5"),
        (["12%", "3.5%", "100%"] * 7, ",", "percentages such as '12%' (row 2)", "12.5"),
        (["$1,200.50", "$87", "-$3.25"] * 7, ",", "amounts with a currency sign such as '$1,200.50' (row 2)", "1234.5"),
    ],
)
def test_numbers_with_separators_or_percent_signs_are_refused_not_taken_for_categories(
    tmp_path, cells, delimiter, written, plain
):
    # pyarrow leaves such cells as text; before, each distinct number became a category level
    quote = '"' if delimiter == "," else ""
    rows = [f"{quote}{v}{quote}{delimiter}{y}" for v, y in zip(cells, labels(len(cells)))]
    write(tmp_path, "t.csv", table(f"amount{delimiter}y", rows))
    message = one_line_error(prepared, tmp_path, path="t.csv", target="y")
    assert message.startswith(f"t.csv: column 'amount' holds {written}; mlpbp reads plain numbers ({plain}")
    assert message.endswith(
        ": rewrite the column, or set data.columns: {amount: categorical} to keep its values as categories"
    )
    p = prepared(tmp_path, path="t.csv", target="y", columns={"amount": "categorical"})
    assert p.preprocessor.columns[0].kind == "categorical"


def test_a_formatted_number_beyond_the_sampled_values_is_still_found():
    # The check settles a column on its first SAMPLE_VALUES distinct cells when one of them is no
    # number at all; a column of plain numbers there must still be read to its last cell.
    import pyarrow as pa

    from mlpbp.data.cells import SAMPLE_VALUES, infer_cells
    from mlpbp.errors import DataError

    plain = [str(i) for i in range(SAMPLE_VALUES + 500)]
    with pytest.raises(DataError, match=r"^column 'n' holds numbers written with a comma such as '1,500' \(row "):
        infer_cells(pa.chunked_array([plain + ["1,500"]]), "n", None, None)
    words = ["red", "green"] * 10 + ["1,500"]  # a category with one such cell: not a number column
    assert infer_cells(pa.chunked_array([words]), "colour", None, None) is None


def test_a_target_of_numbers_with_thousands_separators_is_refused(tmp_path):
    # as labels it made a class per price, refused as too few rows per class: the wrong fix
    rows = [f'{i},"{1000 + 37 * i:,}"' for i in range(30)]
    write(tmp_path, "t.csv", table("a,price", rows))
    assert one_line_error(prepared, tmp_path, path="t.csv", target="price") == (
        "t.csv: target column 'price' holds numbers written with a comma such as '1,000' (row 2); mlpbp reads"
        " plain numbers (1234.5, not 1,234.5 or 1234,5): rewrite the column, or set data.task: classification"
        " to keep its values as classes"
    )


def test_dates_in_a_recognised_format_and_with_data_date_format(tmp_path):
    rows = [f"2017/12/{d:02d},{y}" for d, y in zip(range(1, 21), labels(20))]
    write(tmp_path, "t.csv", table("Date,y", rows))
    p = prepared(tmp_path, path="t.csv", target="y", standardize=False, test_fraction=0, validation_fraction=0)
    (col,) = p.preprocessor.columns
    assert (col.kind, col.format) == ("date", "%Y/%m/%d")
    assert sorted(p.train[0][:, 0]) == list(np.arange(17501.0, 17521.0))  # 2017-12-01 is day 17501
    # The same cells under an explicit format, for one column or for every text date column.
    for fmt in ("%Y/%m/%d", {"Date": "%Y/%m/%d"}):
        q = prepared(tmp_path, path="t.csv", target="y", date_format=fmt, standardize=False)
        assert q.preprocessor.columns[0].format == "%Y/%m/%d"
    assert "%d/%m/%Y" in RECOGNISED and "%H:%M:%S" in RECOGNISED


def test_the_range_of_text_dates_is_the_earliest_and_latest_day(tmp_path):
    days = ["31/08/2020", "20/08/2021", "01/01/2020", "15/03/2021"] * 5
    rows = [f"{d},{y}" for d, y in zip(days, labels(len(days)))]
    write(tmp_path, "t.csv", table("when,y", rows))
    (col, _) = prepared(tmp_path, path="t.csv", target="y").summary["columns"]
    # as strings, '31/08/2020' is the largest: it was shown as the latest date
    assert (col["kind"], col["min"], col["max"]) == ("date", "01/01/2020", "20/08/2021")


def test_a_cell_that_does_not_match_the_date_format(tmp_path):
    rows = [f"2017/12/{d:02d},{y}" for d, y in zip(range(1, 21), labels(20))]
    rows[4] = "2017-12-05,no"
    write(tmp_path, "t.csv", table("Date,y", rows))
    message = one_line_error(prepared, tmp_path, path="t.csv", target="y", date_format={"Date": "%Y/%m/%d"})
    assert (
        message
        == "t.csv: row 6, column 'Date': '2017-12-05' does not match the date format '%Y/%m/%d' (data.date_format)"
    )


def test_day_first_or_month_first_dates_that_read_both_ways_are_refused(tmp_path):
    rows = [f"0{m}/0{d}/2020,{y}" for m, d, y in zip([1, 2, 3, 4] * 5, [5, 6, 7, 8, 9] * 4, labels(20))]
    write(tmp_path, "t.csv", table("when,y", rows))
    message = one_line_error(prepared, tmp_path, path="t.csv", target="y")
    assert message == (
        "t.csv: column 'when': dates such as '01/05/2020' read as both %d/%m/%Y and %m/%d/%Y;"
        " set data.date_format (e.g. data.date_format: {when: '%d/%m/%Y'})"
    )


def test_dates_in_several_formats_are_refused_not_taken_for_categories(tmp_path):
    dates = ["2020-03-14", "15/03/2020", "Mar 16 2020"] * 7
    rows = [f"{d},{y}" for d, y in zip(dates, labels(len(dates)))]
    write(tmp_path, "t.csv", table("when,y", rows))
    assert one_line_error(prepared, tmp_path, path="t.csv", target="y") == (
        "t.csv: column 'when' mixes date formats: '2020-03-14' (row 2) as %Y-%m-%d, '15/03/2020' (row 3) as"
        " %d/%m/%Y, 'Mar 16 2020' (row 4) as %b %d %Y; a column is read with one format (data.date_format):"
        " rewrite the dates in one format, or set data.columns: {when: categorical} to keep its values as categories"
    )
    p = prepared(tmp_path, path="t.csv", target="y", columns={"when": "categorical"})
    assert p.preprocessor.columns[0].kind == "categorical"


def test_a_time_of_day_is_cyclic_hour_and_minute_never_an_id(tmp_path):
    times = [f"{h:02d}:{m:02d}:{s:02d}" for h, m, s in zip(range(24), range(0, 60, 2), range(24))] * 2
    rows = [f"{t},{y}" for t, y in zip(times, labels(48))]
    write(tmp_path, "t.csv", table("time,y", rows))
    p = prepared(tmp_path, path="t.csv", target="y", max_categories=5, test_fraction=0, validation_fraction=0)
    (col,) = p.preprocessor.columns
    assert col.kind == "time" and col.width == 4
    assert p.preprocessor.feature_names == ["time.hour_sin", "time.hour_cos", "time.minute_sin", "time.minute_cos"]
    # 06:00:00 is a quarter of the day: (sin, cos) of the hour (1, 0); of the minute (0, 1)
    np.testing.assert_allclose(time_features(np.array([6 * 3600.0])), [[1.0, 0.0, 0.0, 1.0]], atol=1e-12)
    np.testing.assert_allclose(
        time_features(np.array([15 * 60.0 + 6 * 3600])),
        [[np.sin(2 * np.pi * 6.25 / 24), np.cos(2 * np.pi * 6.25 / 24), 1.0, 0.0]],
        atol=1e-12,
    )
    X = p.train[0]
    np.testing.assert_allclose(X[:, 0] ** 2 + X[:, 1] ** 2, 1.0)


def test_a_timestamp_is_days_and_its_time_of_day(tmp_path):
    stamps = [f"2024-03-{d:02d} {h:02d}:30:00" for d, h in zip(range(1, 21), range(20))]
    write(tmp_path, "t.csv", table("stamp,y", [f"{s},{y}" for s, y in zip(stamps, labels(20))]))
    p = prepared(tmp_path, path="t.csv", target="y", standardize=False, test_fraction=0, validation_fraction=0)
    (col,) = p.preprocessor.columns
    assert col.kind == "datetime" and col.width == 5
    X = p.train[0][np.argsort(p.train[0][:, 0])]
    assert X[0, 0] == pytest.approx(19783 + 0.5 / 24)  # 2024-03-01 00:30 in days since 1970
    np.testing.assert_allclose(X[0, 1:], time_features(np.array([30 * 60.0]))[0], atol=1e-12)
    # Midnight stamps are plain dates
    write(
        tmp_path, "d.csv", table("stamp,y", [f"2024-03-{d:02d} 00:00:00,{y}" for d, y in zip(range(1, 21), labels(20))])
    )
    assert prepared(tmp_path, path="d.csv", target="y").preprocessor.columns[0].kind == "date"


def test_bad_lines_are_refused_or_skipped_with_a_count(tmp_path):
    rows = [f"{i},{i * 2},{y}" for i, y in zip(range(20), labels(20))]
    write(tmp_path, "t.csv", table("a,b,y", [*rows[:5], "7,8", *rows[5:], "x"]))
    message = one_line_error(prepared, tmp_path, path="t.csv", target="y")
    assert message.endswith("t.csv: cannot read as CSV: row 7 has 2 fields, header has 3"), message
    p = prepared(tmp_path, path="t.csv", target="y", bad_lines="skip")
    assert p.summary["rows"] == 20
    assert "t.csv: skipped 2 bad line(s) (data.bad_lines: skip); the first: row 7 has 2 fields, header has 3" in p.notes


def test_header_names_match_after_stripping_with_one_note(tmp_path):
    rows = [f"{i}, {i % 4} ,{y}" for i, y in zip(range(20), labels(20))]
    write(tmp_path, "t.csv", table(" a ,b,class ", rows))
    p = prepared(tmp_path, path="t.csv", target="class ", drop=[" b"])
    assert p.target_names == ["class"] and p.preprocessor.inputs == ["a"]
    assert "t.csv: spaces around column names stripped: ' a ' -> 'a', 'class ' -> 'class'" in p.notes


def test_a_target_column_with_no_value_says_so(tmp_path):
    # it said "has only one class (none)": there is no class at all
    write(tmp_path, "t.csv", table("a,y", [f"{i}," for i in range(20)]))
    assert one_line_error(prepared, tmp_path, path="t.csv", target="y") == (
        "t.csv: target column 'y' has no value: every one of its cells is missing"
    )


def test_header_names_that_collide_once_stripped_are_named_as_written(tmp_path):
    rows = [f"{i},{i + 1},{y}" for i, y in zip(range(20), labels(20))]
    path = write(tmp_path, "t.csv", table("a,a ,y", rows))
    assert one_line_error(prepared, tmp_path, path="t.csv", target="y") == (
        f"{path}: column names 'a' and 'a ' are both 'a' once spaces around names are stripped; rename one"
    )


def test_rare_categories_share_the_infrequent_level_and_unseen_ones_map_to_it(tmp_path):
    colours = ["red"] * 20 + ["blue"] * 20 + ["teal", "teal", "pink", "gold"]
    rows = [f"{c},{i},{y}" for i, (c, y) in enumerate(zip(colours, labels(44)))]
    write(tmp_path, "t.csv", table("colour,x,y", rows))
    p = prepared(tmp_path, path="t.csv", target="y", test_fraction=0, validation_fraction=0)
    col = p.preprocessor.columns[0]
    assert col.categories == ["blue", "red", "infrequent"] and col.rare == ["gold", "pink", "teal"]
    assert (
        "column 'colour': 3 categories with fewer than 5 training rows share the level 'infrequent'"
        " (data.min_frequency): gold, pink, teal"
    ) in p.notes
    # an unseen category is the infrequent level (handle_unknown: infrequent, the default)
    new = pacsv.read_csv(write(tmp_path, "n.csv", "colour,x\nteal,1\nmauve,2\nred,3\n"))
    X = p.preprocessor.transform(new)
    np.testing.assert_array_equal(X[:, :3], [[0, 0, 1], [0, 0, 1], [0, 1, 0]])
    q = prepared(tmp_path, path="t.csv", target="y", min_frequency=1, test_fraction=0, validation_fraction=0)
    assert q.preprocessor.columns[0].categories == ["blue", "gold", "pink", "red", "teal"]


def test_an_unseen_validation_category_is_noted_as_infrequent(tmp_path):
    colours = ["red"] * 20 + ["blue"] * 20 + ["teal"] * 2 + ["pink"] * 2
    rows = [f"{c},{i},{y}" for i, (c, y) in enumerate(zip(colours, labels(44)))]
    rows.append("mauve,99,no")
    write(tmp_path, "t.csv", table("colour,x,y", rows))
    for seed in range(10):  # the first seed that puts the one 'mauve' row outside the training split
        cfg = {"seed": seed, "data": {"path": "t.csv", "target": "y", "test_fraction": 0.3}}
        p = prepare(config_from_dict(cfg, base_dir=tmp_path), dtype="float64")
        mauve = [n for n in p.notes if "'mauve'" in n]
        if mauve:
            break
    assert mauve and "mauve" not in p.preprocessor.columns[0].categories + p.preprocessor.columns[0].rare
    assert mauve[0].startswith("column 'colour': 1 validation/test row(s) with a category the training split lacks")
    assert mauve[0].endswith("encoded as its level 'infrequent' (data.handle_unknown: infrequent)")


def test_missing_cells_are_imputed_by_default_with_a_note_per_column(tmp_path):
    rows = [
        f"{'' if i % 5 == 0 else i},{'' if i % 7 == 0 else 'abc'[i % 3]},{y}" for i, y in zip(range(30), labels(30))
    ]
    write(tmp_path, "t.csv", table("n,c,y", rows))
    p = prepared(tmp_path, path="t.csv", target="y", test_fraction=0, validation_fraction=0)
    med = np.median([i for i in range(30) if i % 5])
    assert f"column 'n': 6 missing cell(s) filled with the training median {med:.6g} (data.missing: impute)" in p.notes
    assert "column 'c': 5 missing cell(s) filed under the category 'missing' (data.missing: impute)" in p.notes
    message = one_line_error(prepared, tmp_path, path="t.csv", target="y", missing="error")
    assert "column 'n' has 6 missing cells (and 1 more column(s)), the first at row 2" in message


def test_test_path_is_the_test_split_and_write_split_writes_the_rows_used(tmp_path, runner):
    rows = [f"{i},{'ab'[i % 2]},{y}" for i, y in zip(range(40), labels(40))]
    write(tmp_path, "train.csv", table("x,c,y", rows))
    write(tmp_path, "test.csv", table("x,c,y", ["1,a,yes", "2,b,no", "3,a,", "4,b,yes"]))
    cfg = {"seed": 3, "data": {"path": "train.csv", "target": "y", "test_path": "test.csv"}}
    p = prepare(config_from_dict(cfg, base_dir=tmp_path), dtype="float64")
    assert p.test[0].shape[0] == 3 and p.val[0].shape[0] == 4 and p.train[0].shape[0] == 36
    assert "test.csv: dropped 1 test row(s) whose target is missing" in p.notes
    with pytest.raises(Exception, match="give test_path or test_fraction, not both"):
        config_from_dict({"data": {**cfg["data"], "test_fraction": 0.2}}, base_dir=tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = runner.invoke(app, ["data", str(tmp_path / "c.yaml"), "--write-split", str(tmp_path / "split")])
    assert res.exit_code == 0, res.stderr
    assert f"wrote 36 train, 4 validation, 3 test rows to {tmp_path / 'split'}" in res.stderr
    written = {n: pacsv.read_csv(tmp_path / "split" / f"{n}.csv") for n in ("train", "validation", "test")}
    xs = sorted(written["train"].column("x").to_pylist() + written["validation"].column("x").to_pylist())
    assert xs == list(range(40))  # a partition of the training file
    assert written["test"].column("x").to_pylist() == [1, 2, 4]
    # the rows in the order training encoded them: the first validation row is validation's first
    keep = prepare(config_from_dict(cfg, base_dir=tmp_path), dtype="float64", keep_tables=True)
    assert keep.tables["validation"].column("x").to_pylist() == written["validation"].column("x").to_pylist()
    assert sorted(keep.split_rows["validation"].tolist()) == sorted(written["validation"].column("x").to_pylist())
