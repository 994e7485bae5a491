"""model.npz files written by mlpbp 0.1 (committed before the package was restructured) must
keep loading and predicting exactly what they predicted then."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from mlpbp.cli import app

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _predict(model: str, rows: str) -> str:
    result = CliRunner().invoke(app, ["predict", str(FIXTURES / model), str(FIXTURES / rows)])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_v01_classifier_predicts_as_it_did():
    expected = (FIXTURES / "v0.1-iris-predictions.csv").read_text()
    assert _predict("v0.1-iris-model.npz", "iris-rows.csv") == expected


def test_v01_regressor_predicts_as_it_did():
    expected = (FIXTURES / "v0.1-sine-predictions.csv").read_text()
    assert _predict("v0.1-sine-model.npz", "sine-rows.csv") == expected
