"""Data loading, CSV/NPZ validation, splitting and standardization."""

import numpy as np
import pytest

from helpers import one_line_error
from mlpbp.data import Dataset, Standardizer, bundled_path, generate, split
from mlpbp.run.config import config_from_dict
from mlpbp.run.prepare import prepare


def _load(tmp_path, **data):
    """Every row, unscaled, in float64 (the training split of a 0/0 split), rows sorted."""
    data = {"test_fraction": 0, "validation_fraction": 0, "standardize": False, **data}
    p = prepare(config_from_dict({"data": data}, base_dir=tmp_path), dtype="float64")
    X, y = p.train
    order = np.lexsort(X.T[::-1])
    return Dataset(X[order], y[order], p.task, p.classes, p.preprocessor.feature_names, p.target_names[0])


# --- bundled datasets and generators ---------------------------------------------------------


def test_digits_bundled(tmp_path):
    ds = _load(tmp_path, dataset="digits")
    assert ds.X.shape == (1797, 64) and ds.X.dtype == np.float64
    assert ds.task == "classification"
    assert ds.classes == [str(i) for i in range(10)]
    assert ds.y.dtype == np.int64 and set(ds.y) == set(range(10))
    assert ds.target_name == "digit" and len(ds.feature_names) == 64


def test_iris_bundled(tmp_path):
    ds = _load(tmp_path, dataset="iris")
    assert ds.X.shape == (150, 4)
    assert ds.classes == ["setosa", "versicolor", "virginica"]
    assert np.bincount(ds.y).tolist() == [50, 50, 50]
    assert ds.target_name == "species"


def test_bundled_path_found():
    assert bundled_path("iris").name == "iris.csv"


def test_xor_is_exactly_four_points(tmp_path):
    ds = _load(tmp_path, dataset="xor", n_samples=100)
    assert ds.X.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert ds.y.tolist() == [0, 1, 1, 0]
    assert ds.classes == ["0", "1"]


def test_xor_noise_jitters():
    ds = generate("xor", seed=0, noise=0.1)
    assert ds.X.shape == (4, 2)
    assert not np.array_equal(ds.X, [[0, 0], [0, 1], [1, 0], [1, 1]])


@pytest.mark.parametrize("name", ["moons", "circles", "spirals"])
def test_two_class_generators(name):
    ds = generate(name, seed=3, n_samples=101, noise=0.1)
    assert ds.X.shape == (101, 2) and ds.task == "classification"
    assert sorted(np.bincount(ds.y).tolist()) == [50, 51]
    again = generate(name, seed=3, n_samples=101, noise=0.1)
    assert np.array_equal(ds.X, again.X) and np.array_equal(ds.y, again.y)
    assert not np.array_equal(ds.X, generate(name, seed=4, n_samples=101, noise=0.1).X)


def test_circles_radii_without_noise():
    ds = generate("circles", seed=0, n_samples=40, noise=0.0)
    r = np.linalg.norm(ds.X, axis=1)
    assert np.allclose(r[ds.y == 0], 1.0) and np.allclose(r[ds.y == 1], 0.5)


def test_sine_regression():
    ds = generate("sine", seed=0, n_samples=50, noise=0.0)
    assert ds.task == "regression" and ds.classes is None
    assert ds.X.shape == (50, 1) and ds.y.shape == (50, 1)
    assert np.allclose(ds.y, np.sin(ds.X))
    assert np.all(np.abs(ds.X) <= np.pi)


def test_generator_task_mismatch(tmp_path):
    assert "regression" in one_line_error(_load, tmp_path, dataset="sine", task="classification")


# --- splitting -------------------------------------------------------------------------------


def test_stratified_split_keeps_proportions(tmp_path):
    ds = _load(tmp_path, dataset="digits")
    s = split(ds, 0.2, 0.1, seed=0)
    sizes = [len(part[1]) for part in (s.train, s.val, s.test)]
    assert sum(sizes) == 1797
    counts = np.bincount(ds.y, minlength=10)
    for part, frac in ((s.test, 0.2), (s.val, 0.1)):
        got = np.bincount(part[1], minlength=10)
        assert np.all(np.abs(got - counts * frac) <= 1)
    # Splits are disjoint and cover every row.
    rows = np.concatenate([s.train[0], s.val[0], s.test[0]])
    assert np.array_equal(np.unique(rows, axis=0), np.unique(ds.X, axis=0))


def test_split_deterministic_per_seed():
    ds = generate("moons", seed=0, n_samples=200)
    a, b, c = split(ds, 0.2, 0.1, 7), split(ds, 0.2, 0.1, 7), split(ds, 0.2, 0.1, 8)
    assert np.array_equal(a.test[0], b.test[0]) and np.array_equal(a.train[1], b.train[1])
    assert not np.array_equal(a.test[0], c.test[0])


def test_zero_fractions_give_empty_splits():
    ds = generate("moons", seed=0, n_samples=50)
    s = split(ds, 0.0, 0.0, 0)
    assert s.test[0].shape == (0, 2) and s.val[0].shape == (0, 2) and len(s.train[1]) == 50


def test_split_tiny_dataset_still_fills_requested_splits():
    s = split(generate("xor", seed=0), 0.2, 0.1, 0)
    assert len(s.test[1]) == 1 and len(s.val[1]) == 1
    assert sorted(s.train[1].tolist()) == [0, 1]  # every class keeps a training row


def test_split_not_enough_rows():
    ds = Dataset(np.zeros((2, 1)), np.array([0, 1]), "classification", ["a", "b"], ["x"], "y")
    assert "not enough rows" in one_line_error(split, ds, 0.2, 0.1, 0)


@pytest.mark.parametrize(
    "test, val, asked, keys",
    [
        (0.2, 0.0, "a test row", "data.test_fraction"),
        (0.0, 0.2, "a validation row", "data.validation_fraction"),
        (0.2, 0.1, "a test and a validation row", "data.test_fraction / data.validation_fraction"),
    ],
)
def test_split_not_enough_rows_names_only_the_splits_asked_for(test, val, asked, keys):
    """validation_fraction: 0 asks for no validation row: the message does not mention one."""
    ds = Dataset(np.zeros((3, 1)), np.array([0, 1, 2]), "classification", ["a", "b", "c"], ["x"], "y")
    assert one_line_error(split, ds, test, val, 0) == (
        f"not enough rows: 3 rows in 3 classes cannot give every class a training row plus {asked};"
        f" lower {keys} or add data"
    )
    reg = Dataset(np.zeros((2, 1)), np.array([0.1, 0.2]), "regression", None, ["x"], "y")
    more = {(0.2, 0.0): (0.9, 0.0), (0.0, 0.2): (0.0, 0.9), (0.2, 0.1): (0.5, 0.5)}[test, val]
    counts = {(0.9, 0.0): "2 test rows", (0.0, 0.9): "2 validation rows", (0.5, 0.5): "1 test row, 1 validation row"}
    assert one_line_error(split, reg, *more, 0) == (
        f"not enough rows: 2 rows cannot give {counts[more]} and at least 1 training row; lower {keys} or add data"
    )


def test_regression_split():
    ds = generate("sine", seed=0, n_samples=100)
    s = split(ds, 0.2, 0.1, 0)
    assert [len(p[1]) for p in (s.train, s.val, s.test)] == [70, 10, 20]
    assert s.train[1].shape == (70, 1)


# --- CSV -------------------------------------------------------------------------------------


def _write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_data_path_relative_to_config_dir(tmp_path):
    _write(tmp_path, "a,y\n1,0\n2,1\n3,0\n")
    ds = _load(tmp_path, path="data.csv")
    assert ds.X.shape == (3, 1)


# --- NPZ -------------------------------------------------------------------------------------


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    np.savez(tmp_path / "c.npz", X=X, y=np.arange(30) % 3 * 5)
    ds = _load(tmp_path, path="c.npz")
    assert ds.task == "classification" and ds.classes == ["0", "5", "10"]
    order = np.lexsort(X.T[::-1])
    assert np.array_equal(ds.X, X[order]) and ds.y.tolist() == (np.arange(30) % 3)[order].tolist()
    np.savez(tmp_path / "r.npz", X=X, y=X[:, :2] * 2.0)
    reg = _load(tmp_path, path="r.npz")
    assert reg.task == "regression" and reg.y.shape == (30, 2)


def test_npz_rejects_pickled_objects(tmp_path):
    np.savez(tmp_path / "o.npz", X=np.zeros((2, 2)), y=np.array([{"a": 1}, None], dtype=object))
    assert "pickle" in one_line_error(_load, tmp_path, path="o.npz")


def test_npz_shape_errors(tmp_path):
    np.savez(tmp_path / "a.npz", X=np.zeros((3, 2)), y=np.zeros(4))
    assert "shape" in one_line_error(_load, tmp_path, path="a.npz")
    np.savez(tmp_path / "b.npz", X=np.zeros(3), y=np.zeros(3))
    assert "2-D" in one_line_error(_load, tmp_path, path="b.npz")
    np.savez(tmp_path / "c.npz", features=np.zeros((3, 2)))
    assert "X, y" in one_line_error(_load, tmp_path, path="c.npz")
    np.savez(tmp_path / "d.npz", X=np.array([[1.0, np.inf]]), y=np.zeros(1))
    assert "X[0, 1]" in one_line_error(_load, tmp_path, path="d.npz")


# --- standardization -------------------------------------------------------------------------


def test_standardizer_fits_train_only():
    ds = generate("moons", seed=0, n_samples=200)
    s = split(ds, 0.2, 0.1, 0)
    st = Standardizer().fit(s.train[0])
    Z = st.transform(s.train[0])
    assert np.allclose(Z.mean(axis=0), 0.0) and np.allclose(Z.std(axis=0), 1.0)
    assert np.allclose(st.mean, s.train[0].mean(axis=0))  # not the full data's mean
    assert np.allclose(st.inverse_transform(st.transform(s.test[0])), s.test[0])


def test_standardizer_constant_column_and_identity():
    X = np.column_stack([np.full(5, 3.0), np.arange(5.0)])
    st = Standardizer().fit(X)
    Z = st.transform(X)
    assert np.all(np.isfinite(Z)) and np.allclose(Z[:, 0], 0.0) and st.scale[0] == 1.0
    ident = Standardizer.identity(2)
    assert np.array_equal(ident.transform(X), X)
    assert ident.mean.dtype == np.float64 and ident.scale.dtype == np.float64
