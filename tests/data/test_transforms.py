"""Numeric and target transforms: the quantile transform against a known distribution and
scikit-learn's QuantileTransformer, exact inverses, robust statistics, auto's choice, and the
transforms as stored in and read back from a model file."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy.special import ndtri
from sklearn.preprocessing import QuantileTransformer

from mlpbp.data.preprocessing import Preprocessor
from mlpbp.data.transforms import (
    TargetScaler,
    Transform,
    choose,
    more_linear_raw,
    quantile_knots,
    signed_expm1,
    signed_log1p,
)


def test_quantile_transform_of_a_lognormal_is_standard_normal():
    rng = np.random.default_rng(0)
    x = rng.lognormal(0.0, 1.0, 20_000)
    t = Transform.fit("quantile", x)
    z = t.forward(rng.lognormal(0.0, 1.0, 20_000))  # fresh rows of the same distribution
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.03
    # its quantiles are the normal's: the median of lognormal(0, 1) is 1, its 84% quantile e
    np.testing.assert_allclose(t.forward(np.array([1.0, np.e])), [0.0, ndtri(0.8413447)], atol=0.03)


def test_quantile_transform_matches_scikit_learn_inside_the_tails():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.gamma(2.0, 3.0, 3000), np.full(200, 4.0)])  # a value many rows share
    ours = Transform.fit("quantile", x)
    theirs = QuantileTransformer(output_distribution="normal", n_quantiles=1000).fit(x[:, None])
    probe = np.quantile(x, np.linspace(0.01, 0.99, 300))
    np.testing.assert_allclose(ours.forward(probe), theirs.transform(probe[:, None])[:, 0], atol=0.02)
    # the ends and beyond: clamped to the normal's 1e-7 quantiles, as scikit-learn
    np.testing.assert_allclose(ours.forward(np.array([-5.0, 1e6])), [ndtri(1e-7), -ndtri(1e-7)])


def test_quantile_inverse_is_exact_on_the_training_range():
    rng = np.random.default_rng(2)
    x = rng.standard_t(3, 5000)
    t = Transform.fit("quantile", x)
    probe = rng.uniform(x.min(), x.max(), 1000)
    np.testing.assert_allclose(t.inverse(t.forward(probe)), probe, rtol=1e-12, atol=1e-12)
    xk, zk = quantile_knots(np.array([1.0, 1.0, 1.0, 2.0, 3.0]))
    assert xk.tolist() == [1.0, 2.0, 3.0] and np.all(np.diff(zk) > 0)  # ties are one knot


def test_signed_log1p_and_its_inverse():
    x = np.array([-1e6, -3.5, -1.0, 0.0, 0.25, 7.0, 1e9])
    np.testing.assert_allclose(signed_log1p(x), np.sign(x) * np.log1p(np.abs(x)))
    np.testing.assert_allclose(signed_log1p(np.array([np.e - 1])), [1.0])
    np.testing.assert_allclose(signed_expm1(signed_log1p(x)), x, rtol=1e-13)


def test_auto_transforms_skewed_columns_only():
    rng = np.random.default_rng(3)
    assert choose(rng.normal(size=1000)) == "standardize"
    assert choose(rng.lognormal(size=1000)) == "log1p"  # right-skewed, never negative
    assert choose(-rng.lognormal(size=1000)) == "quantile"  # skewed otherwise
    assert choose(rng.lognormal(size=1000) - 0.5) == "quantile"
    assert choose(rng.choice([0.0, 1.0], 1000, p=[0.95, 0.05])) == "standardize"  # binary: as it is


def test_auto_keeps_a_skewed_column_linear_where_a_regression_target_is():
    """price = area · dist^-0.25 · noise: linear in the area (r 0.91 raw against 0.86 logged),
    a power in the distance (r -0.35 logged against -0.29 raw). auto standardises area, logs
    distance; without a target both are logged; the block of plain numeric columns and the
    per-column path (a float32 column) choose alike."""
    rng = np.random.default_rng(5)
    area, dist = rng.lognormal(4.5, 0.5, 2000), rng.lognormal(1.5, 0.8, 2000)
    price = area * dist**-0.25 * rng.lognormal(0, 0.05, 2000)
    x = np.log1p(area)
    assert np.corrcoef(area, price)[0, 1] > np.corrcoef(x, price)[0, 1] > 0.8
    assert np.corrcoef(np.log1p(dist), price)[0, 1] < np.corrcoef(dist, price)[0, 1] < 0
    assert more_linear_raw(area, price) and not more_linear_raw(dist, price)
    assert more_linear_raw(area, np.column_stack([np.log(dist), price]))  # any output counts
    # a target unrelated to the column: its |r| is chance (under 2/sqrt(n)), and log1p stays
    unrelated = rng.normal(size=2000)
    assert abs(np.corrcoef(area, unrelated)[0, 1]) < 2 / np.sqrt(2000) and not more_linear_raw(area, unrelated)
    for arrays in ({"area": area, "dist": dist}, {"area": pa.array(area, pa.float32()), "dist": dist}):
        table = pa.table(arrays)
        kinds = [
            c.transform.kind
            for c in Preprocessor.fit(table, ["area", "dist"], np.arange(2000), numeric="auto", target=price).columns
        ]
        assert kinds == ["standardize", "log1p"]
        kinds = [
            c.transform.kind for c in Preprocessor.fit(table, ["area", "dist"], np.arange(2000), numeric="auto").columns
        ]
        assert kinds == ["log1p", "log1p"]


def test_auto_weighs_log1p_against_class_codes_as_their_indicators():
    """A class target: the log-odds of class 1 grow with a capital gain itself (|r| 0.081 raw
    against 0.033 logged), of class 2 with the log of a spend; codes decide as their 0/1
    indicator columns do, and Preprocessor.fit standardises the gain and logs the spend."""
    rng = np.random.default_rng(6)
    n = 3000
    gain = np.where(rng.random(n) < 0.1, rng.lognormal(8.5, 1.1, n), 0.0)
    spend = rng.lognormal(3, 1.0, n)
    logits = np.column_stack([np.zeros(n), gain / 20000, np.log(spend) - 3])
    codes = (logits + rng.gumbel(size=(n, 3))).argmax(axis=1)
    onehot = np.eye(3)[codes]
    assert more_linear_raw(gain, codes) and more_linear_raw(gain, onehot)
    assert not more_linear_raw(spend, codes) and not more_linear_raw(spend, onehot)
    for x in (gain, spend, rng.lognormal(size=n), np.where(rng.random(n) < 0.5, np.nan, spend)):
        assert more_linear_raw(x, codes) == more_linear_raw(x, onehot)
    table = pa.table({"gain": gain, "spend": spend})
    pre = Preprocessor.fit(table, ["gain", "spend"], np.arange(n), numeric="auto", target=codes)
    assert [c.transform.kind for c in pre.columns] == ["standardize", "log1p"]


def _fitted(**numeric) -> tuple[Preprocessor, pa.Table, dict]:
    rng = np.random.default_rng(4)
    cols = {
        "q": rng.lognormal(size=400),
        "l": rng.exponential(5, 400),
        "r": rng.standard_t(2, 400),
        "s": rng.normal(3, 2, 400),
    }
    table = pa.table(cols)
    pre = Preprocessor.fit(
        table,
        list(cols),
        np.arange(400),
        numeric=numeric or {"q": "quantile", "l": "log1p", "r": "robust", "s": "standardize"},
    )
    return pre, table, cols


def test_each_column_gets_its_transform_and_standardisation():
    pre, table, cols = _fitted()
    X = pre.transform(table)
    assert [c.transform.kind for c in pre.columns] == ["quantile", "log1p", "robust", "standardize"]
    assert abs(X[:, 0].mean()) < 0.05 and abs(X[:, 0].std() - 1) < 0.1  # quantile: already normal
    logged = np.log1p(cols["l"])
    np.testing.assert_allclose(X[:, 1], (logged - logged.mean()) / logged.std())
    q1, med, q3 = np.quantile(cols["r"], [0.25, 0.5, 0.75])
    np.testing.assert_allclose(X[:, 2], (cols["r"] - med) / (q3 - q1))  # robust: median and IQR
    np.testing.assert_allclose(X[:, 3], (cols["s"] - cols["s"].mean()) / cols["s"].std())
    # inverse_transform undoes all of it; encode_array redoes it from the columns' units
    raw = np.column_stack([cols[k] for k in "qlrs"])
    np.testing.assert_allclose(pre.inverse_transform(X), raw, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(pre.encode_array(raw), X, rtol=1e-9, atol=1e-9)


def test_transforms_round_trip_through_the_model_metadata():
    pre, table, _ = _fitted()
    again = Preprocessor.from_meta(pre.to_meta(), pre.mean, pre.scale)
    np.testing.assert_array_equal(again.transform(table), pre.transform(table))
    with pytest.raises(ValueError, match="quantile knots must increase"):
        meta = pre.to_meta()
        meta["columns"][0]["transform"]["x"] = meta["columns"][0]["transform"]["x"][::-1]
        Preprocessor.from_meta(meta, pre.mean, pre.scale)


@pytest.mark.parametrize("kind", ["log1p", "quantile"])
def test_target_transforms_invert_exactly(kind):
    rng = np.random.default_rng(5)
    y = rng.lognormal(3, 1, (500, 2))
    s = TargetScaler.fit(kind, y)
    z = s.transform(y)
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.1
    np.testing.assert_allclose(s.inverse_transform(z), y, rtol=1e-10)


def test_prepare_weighs_log1p_against_the_regression_target_as_the_network_fits_it(tmp_path):
    from mlpbp.run.config import config_from_dict
    from mlpbp.run.prepare import prepare

    rng = np.random.default_rng(6)
    area, dist = rng.lognormal(4.5, 0.5, 600), rng.lognormal(1.5, 0.8, 600)
    price = area * dist**-0.25 * rng.lognormal(0, 0.05, 600)
    lines = ["area,dist,price"] + [f"{a:.3f},{d:.3f},{p:.3f}" for a, d, p in zip(area, dist, price)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")

    def kinds(**data):
        cfg = config_from_dict({"data": {"path": "t.csv", "target": "price", **data}}, base_dir=tmp_path)
        return [c.transform.kind for c in prepare(cfg).preprocessor.columns]

    assert kinds() == ["standardize", "log1p"]  # price is linear in area
    # a log1p target: log price = log area - 0.25 log dist, linear in both logs
    assert kinds(target_transform="log1p") == ["log1p", "log1p"]
    assert kinds(numeric={"area": "log1p"}) == ["log1p", "log1p"]  # a column's own transform is kept
