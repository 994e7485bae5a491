"""scikit-learn's own tests of its MLPs, run against mlpbp's: ``sklearn/neural_network/tests/
test_mlp.py`` from the installed wheel, copied at test time (never vendored) with only its import
changed to ``from mlpbp.sklearn import MLPClassifier, MLPRegressor``. Every test must pass but
those listed in EXCLUDED, each with its reason."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import sklearn

from helpers import PYTHON, subprocess_env

SOURCE = Path(sklearn.__file__).parent / "neural_network" / "tests" / "test_mlp.py"
ORIGINAL = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
REPLACEMENT = "from mlpbp.sklearn import MLPClassifier, MLPRegressor"

# Tests that read scikit-learn's private attributes, each with its reason. None today: the
# estimators keep the private names those tests read (_loss_grad_lbfgs with scikit-learn's
# packing of the parameters, _optimizer.learning_rate, _no_improvement_count).
EXCLUDED: dict[str, str] = {}


@pytest.mark.slow
def test_scikit_learns_own_mlp_tests_pass_against_mlpbp(tmp_path):
    text = SOURCE.read_text(encoding="utf-8")
    assert text.count(ORIGINAL) == 1, f"{SOURCE} no longer imports the estimators as expected"
    (tmp_path / "test_mlp.py").write_text(text.replace(ORIGINAL, REPLACEMENT), encoding="utf-8")
    deselect = [f"--deselect=test_mlp.py::{name}" for name in EXCLUDED]
    # sklearn.conftest: the global_random_seed fixture scikit-learn's tests take
    command = [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "sklearn.conftest", "test_mlp.py"]
    proc = subprocess.run(
        command + deselect, cwd=tmp_path, capture_output=True, text=True, env=subprocess_env(), timeout=3000
    )
    tail = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    summary = re.search(r"(\d+) passed", proc.stdout)
    assert summary and int(summary.group(1)) >= 59 - len(EXCLUDED), tail
    assert " failed" not in proc.stdout.splitlines()[-1] and "error" not in proc.stdout.splitlines()[-1], tail
