"""model.npz files written by mlpbp 0.1 (committed before the package was restructured) must
keep loading and predicting what they predicted then: the same header and labels, and numbers
equal to 1e-12 relative (their last bits depend on the BLAS kernel, i.e. on the CPU)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from mlpbp.cli import app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _predict(model: str, rows: str) -> str:
    result = CliRunner().invoke(app, ["predict", str(FIXTURES / model), str(FIXTURES / rows)])
    assert result.exit_code == 0, result.output
    return result.stdout


def _same_predictions(got: str, expected: str) -> None:
    got_rows, expected_rows = (list(csv.reader(io.StringIO(text))) for text in (got, expected))
    assert got_rows[0] == expected_rows[0] and len(got_rows) == len(expected_rows)
    for got_row, expected_row in zip(got_rows[1:], expected_rows[1:]):
        for a, b in zip(got_row, expected_row, strict=True):
            try:
                np.testing.assert_allclose(float(a), float(b), rtol=1e-12, atol=1e-15)
            except ValueError:  # a class label
                assert a == b


def test_v01_classifier_predicts_as_it_did():
    expected = (FIXTURES / "v0.1-iris-predictions.csv").read_text()
    _same_predictions(_predict("v0.1-iris-model.npz", "iris-rows.csv"), expected)


def test_v01_regressor_predicts_as_it_did():
    expected = (FIXTURES / "v0.1-sine-predictions.csv").read_text()
    _same_predictions(_predict("v0.1-sine-model.npz", "sine-rows.csv"), expected)
