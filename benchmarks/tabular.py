"""mlpbp's default (data.path + data.target only) against scikit-learn's default MLP pipeline and
HistGradientBoosting, on the same splits of small public and generated tables.

    python benchmarks/tabular.py [--seeds 5] [--tables diabetes,wine,...] [--out results.json]

Tables: scikit-learn's bundled diabetes, wine, breast_cancer and digits (shipped inside its
wheel, nothing downloaded), and four generated with known structure: ``shop`` (categories, a
rare category, missing cells, a date written 2021/03/04, skewed spend; classification),
``prices`` (log-normal features and target, a category, missing cells; regression),
``sensors`` (a time-of-day column written 10:49:41 whose hour drives the label, a timestamp,
noise; classification), ``cities`` (a 60-level category whose levels act through two
hidden traits, which mlpbp's default embeds; classification) and ``homes`` (housing-like: a
value driven by income and by latitude and longitude through four city centres and a coast;
regression; where periodic or piecewise-linear numeric embeddings should matter), and two larger
ones for the recipe's large-table settings: ``census`` (30,000 rows after the Adult census-income
table: categories with '?' for unknown, a rare-level country column, a capital gain that is
mostly zeros; classification) and ``homes20k`` (``homes`` with 20,000 rows). Each seed splits 80/20
(stratified for classification) and every model gets the same rows: mlpbp reads train.csv
with data.test_path test.csv; scikit-learn gets the same cells with dates and times turned
into numbers (days; seconds of the day), since its pipeline cannot read them.

- scikit-learn MLP: SimpleImputer (median / most frequent) + OneHotEncoder(handle_unknown=ignore)
  + StandardScaler + MLPClassifier/MLPRegressor(early_stopping=True), regression targets
  standardised (TransformedTargetRegressor), everything else default.
- HistGradientBoosting: native categories (OrdinalEncoder), missing cells as NaN, defaults.

Every model runs in one thread (BLAS and OpenMP limited to 1, mlpbp train.threads: 1): the
machine is shared, and HistGradientBoosting's OpenMP threads on busy cores took 10-60x longer.

Prints a Markdown table of mean ± sd over the seeds (accuracy, or RMSE in the target's units)
and each model's fit time. Fit times are wall-clock, measured on whatever else the machine runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _bundled(name: str) -> tuple[pd.DataFrame, str, str]:
    from sklearn import datasets

    loader = {
        "diabetes": datasets.load_diabetes,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
        "digits": datasets.load_digits,
    }[name]
    b = loader(as_frame=True)
    df = b.frame.rename(columns=str)
    if name != "diabetes":
        df["target"] = df["target"].map(lambda i: f"c{i}")  # labels as text
    return df, "target", "regression" if name == "diabetes" else "classification"


def _shop(rng: np.random.Generator, n: int = 3000) -> tuple[pd.DataFrame, str, str]:
    plan = rng.choice(["basic", "pro", "team", "edu"], n, p=[0.5, 0.3, 0.17, 0.03])
    region = rng.choice([f"r{i}" for i in range(12)], n)
    spend = rng.lognormal(3, 1.0, n)
    age = rng.normal(40, 12, n).round()
    days = rng.integers(0, 1000, n)
    date = pd.to_datetime("2021-01-01") + pd.to_timedelta(days, unit="D")
    logit = (
        0.9 * (np.log(spend) - 3)
        + np.select([plan == "pro", plan == "team", plan == "edu"], [0.4, 0.8, 1.5], -0.5)
        - 0.03 * (age - 40)
        + 0.0015 * (days - 500)
        + np.isin(region, ["r1", "r2", "r3"]) * 0.6
    )
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    df = pd.DataFrame(
        {"plan": plan, "region": region, "spend": spend.round(2), "age": age, "signup": date.strftime("%Y/%m/%d")}
    )
    df.loc[rng.random(n) < 0.08, "age"] = np.nan
    df.loc[rng.random(n) < 0.05, "region"] = None
    df["bought"] = y
    return df, "bought", "classification"


def _prices(rng: np.random.Generator, n: int = 3000) -> tuple[pd.DataFrame, str, str]:
    area = rng.lognormal(4.5, 0.5, n)
    rooms = rng.integers(1, 7, n)
    dist = rng.lognormal(1.5, 0.8, n)
    kind = rng.choice(["flat", "house", "villa"], n, p=[0.6, 0.35, 0.05])
    log_price = (
        1.0 * np.log(area)
        + 0.05 * rooms
        - 0.25 * np.log(dist)
        + np.select([kind == "house", kind == "villa"], [0.3, 0.9], 0.0)
        + rng.normal(0, 0.2, n)
    )
    df = pd.DataFrame({"area": area.round(1), "rooms": rooms, "distance": dist.round(2), "kind": kind})
    df.loc[rng.random(n) < 0.06, "distance"] = np.nan
    df["price"] = np.exp(log_price + 6).round(0)
    return df, "price", "regression"


def _sensors(rng: np.random.Generator, n: int = 3000) -> tuple[pd.DataFrame, str, str]:
    seconds = rng.integers(0, 86400, n)
    hour = seconds / 3600
    temp = 20 + 3 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 1, n)
    light = np.clip(500 * np.sin(np.pi * (hour - 6) / 12), 0, None) + rng.normal(0, 30, n)
    co2 = rng.normal(600, 80, n)
    occupied = ((hour > 8) & (hour < 18) & (rng.random(n) < 0.9)) | (rng.random(n) < 0.05)
    co2 = co2 + 250 * occupied
    t = (
        pd.to_datetime("2024-03-01")
        + pd.to_timedelta(rng.integers(0, 30, n), unit="D")
        + pd.to_timedelta(seconds, unit="s")
    )
    df = pd.DataFrame(
        {
            "time": [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in seconds],
            "stamp": t.strftime("%Y-%m-%d %H:%M:%S"),
            "temperature": temp.round(2),
            "light": light.round(1),
            "co2": co2.round(0),
        }
    )
    df["occupied"] = np.where(occupied, "yes", "no")
    return df, "occupied", "classification"


def _cities(rng: np.random.Generator, n: int = 3000, levels: int = 60) -> tuple[pd.DataFrame, str, str]:
    """A high-cardinality column: 60 cities (about 40 rows each), each with two hidden traits,
    one acting alone and one through x; the default embeds it (data.categorical: auto)."""
    latent = rng.normal(size=(levels, 2))
    city = rng.integers(0, levels, n)
    x = rng.normal(size=n)
    logit = 2.0 * latent[city, 0] + 1.5 * x * latent[city, 1] + 0.5 * x
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    df = pd.DataFrame({"city": [f"c{c:03d}" for c in city], "x": x.round(4)})
    df["y"] = y
    return df, "y", "classification"


def _homes(rng: np.random.Generator, n: int = 4000) -> tuple[pd.DataFrame, str, str]:
    """Housing-like (after California housing): a value driven by income and by where a home
    is, latitude and longitude acting through the distance to four city centres (a bump each,
    0.3-0.6 degrees wide) and a coast line, things a standardised coordinate's one slope misses."""
    lat, lon = rng.uniform(33, 41, n), rng.uniform(-124, -115, n)
    income = rng.lognormal(1.2, 0.45, n)
    age = rng.integers(1, 52, n)
    centres = [
        (34.05, -118.25, 0.5, 1.2),
        (37.77, -122.42, 0.4, 1.5),
        (32.72, -117.16, 0.6, 0.7),
        (38.58, -121.49, 0.3, 0.5),
    ]
    near = sum(h * np.exp(-((lat - a) ** 2 + (lon - o) ** 2) / (2 * w**2)) for a, o, w, h in centres)
    coast = np.exp(-np.abs(lon - (-124 + 0.9 * (41 - lat))) / 0.7)  # the coast runs south-east
    value = 0.45 * income + near + 0.6 * coast - 0.004 * age + rng.normal(0, 0.25, n)
    df = pd.DataFrame({"latitude": lat.round(3), "longitude": lon.round(3), "income": income.round(3), "age": age})
    df["value"] = value.round(4)
    return df, "value", "regression"


def _census(rng: np.random.Generator, n: int = 30_000) -> tuple[pd.DataFrame, str, str]:
    """Census-income-like (after the Adult table): whether an income is above a line, from age
    (rising to about 50, then falling), schooling, marriage, occupation, hours and a capital
    gain that is zero for 92% of rows and heavy-tailed for the rest; '?' marks an unknown
    occupation or work class (5%), and a 30-level country column is 90% one level, with levels
    of a few rows (rare in a split, or in one split only)."""
    age = np.clip(rng.gamma(12.8, 3.8, n) - 10, 17, 90).round()  # mean 38.6, sd 13.6, skewness 0.56: the Adult table's
    share = np.r_[[0.01] * 8, [0.04, 0.32, 0.22, 0.04, 0.04, 0.16, 0.05, 0.03]]
    school = rng.choice(np.arange(1, 17), n, p=share / share.sum())
    married = rng.choice(["married", "never", "divorced", "widowed", "separated"], n, p=[0.47, 0.33, 0.13, 0.03, 0.04])
    jobs = [f"job{i:02d}" for i in range(14)]
    job_effect = dict(zip(jobs, np.linspace(-1.2, 1.3, 14)))
    job = rng.choice(jobs, n)
    work = rng.choice(["private", "self", "state", "federal", "local"], n, p=[0.7, 0.11, 0.05, 0.04, 0.1])
    sex = rng.choice(["female", "male"], n, p=[0.33, 0.67])
    hours = np.clip(rng.normal(40, 12, n), 1, 99).round()
    gain = np.where(rng.random(n) < 0.08, rng.lognormal(8.5, 1.1, n), 0.0).round()
    countries = ["home"] + [f"land{i:02d}" for i in range(29)]
    weights = np.r_[0.9, rng.dirichlet(np.full(29, 0.4)) * 0.1]
    country = rng.choice(countries, n, p=weights / weights.sum())
    logit = (
        -2.7
        + 0.35 * (school - 10)
        + 2.2 * (married == "married")
        - 0.0016 * (age - 50) ** 2
        + np.array([job_effect[j] for j in job])
        + 0.03 * (hours - 40)
        + np.where(gain > 7000, 3.0, 0.0)
        + 0.3 * (sex == "male")
        + 0.4 * (work == "self") * (school > 12)
    )
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), ">50K", "<=50K")
    df = pd.DataFrame(
        {
            "age": age.astype(int),
            "workclass": work,
            "education_num": school,
            "marital_status": married,
            "occupation": job,
            "sex": sex,
            "capital_gain": gain.astype(int),
            "hours_per_week": hours.astype(int),
            "native_country": country,
        }
    )
    unknown = rng.random(n) < 0.05
    df.loc[unknown, "occupation"] = "?"
    df.loc[unknown & (rng.random(n) < 0.9), "workclass"] = "?"
    df["income"] = y
    return df, "income", "classification"


GENERATED = {
    "shop": _shop,
    "prices": _prices,
    "sensors": _sensors,
    "cities": _cities,
    "homes": _homes,
    "census": _census,
    "homes20k": lambda rng: _homes(rng, 20_000),
}
TABLES = [
    "diabetes",
    "wine",
    "breast_cancer",
    "digits",
    "shop",
    "prices",
    "sensors",
    "cities",
    "homes",
    "census",
    "homes20k",
]


def load(name: str) -> tuple[pd.DataFrame, str, str]:
    if name in GENERATED:
        return GENERATED[name](np.random.default_rng(12345))  # one table; the seeds vary the split
    return _bundled(name)


def split(df: pd.DataFrame, target: str, task: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    strat = df[target] if task == "classification" else None
    return train_test_split(df, test_size=0.2, random_state=seed, stratify=strat)


def for_sklearn(df: pd.DataFrame) -> pd.DataFrame:
    """Dates as days since 1970 and times of day as seconds: what a scikit-learn user writes."""
    out = df.copy()
    for c in out.columns:
        if not pd.api.types.is_numeric_dtype(out[c]):
            s = out[c].dropna().astype(str)
            if len(s) and s.str.match(r"^\d\d:\d\d:\d\d$").all():
                out[c] = pd.to_timedelta(out[c]).dt.total_seconds()
            elif len(s) and s.str.match(r"^\d{4}[/-]\d\d[/-]\d\d").all():
                out[c] = (pd.to_datetime(out[c].str.replace("/", "-")) - pd.Timestamp("1970-01-01")).dt.days
    return out


def sklearn_models(X: pd.DataFrame, task: str, seed: int):
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    cats = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    nums = [c for c in X.columns if c not in cats]
    onehot = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), nums),
            (
                "cat",
                make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
                cats,
            ),
        ]
    )
    if task == "classification":
        mlp = make_pipeline(onehot, MLPClassifier(early_stopping=True, random_state=seed))
    else:
        mlp = TransformedTargetRegressor(
            make_pipeline(onehot, MLPRegressor(early_stopping=True, random_state=seed)), transformer=StandardScaler()
        )
    ordinal = ColumnTransformer(
        [
            ("num", "passthrough", nums),
            ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan), cats),
        ]
    )
    hgb_cls = HistGradientBoostingClassifier if task == "classification" else HistGradientBoostingRegressor
    mask = [False] * len(nums) + [True] * len(cats)
    hgb = make_pipeline(ordinal, hgb_cls(categorical_features=mask, random_state=seed))
    return {"sklearn_mlp": mlp, "hgb": hgb}


def score(task: str, y_true, y_pred) -> float:
    if task == "classification":
        return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))
    return float(np.sqrt(np.mean((np.asarray(y_true, float) - np.asarray(y_pred, float)) ** 2)))


def _merged(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def fit_mlpbp(
    train: pd.DataFrame, test: pd.DataFrame, target: str, seed: int, workdir: Path, extra: dict | None = None
) -> tuple[float, float]:
    """mlpbp's default on ``train``, scored on ``test``; ``extra``: config keys merged over the
    default's (``--mlpbp '{"model": {"dropout": 0}}'``), to measure one change against it."""
    from mlpbp.run.config import config_from_dict
    from mlpbp.run.prepare import prepare
    from mlpbp.run.trainer import Trainer

    train.to_csv(workdir / "train.csv", index=False)
    test.to_csv(workdir / "test.csv", index=False)
    base = {
        "seed": seed,
        "data": {"path": "train.csv", "target": target, "test_path": "test.csv"},
        "train": {"threads": 1},
    }
    cfg = config_from_dict(
        _merged(base, extra or {}),
        base_dir=workdir,
        name="bench",
    )
    started = time.perf_counter()
    result = Trainer(cfg, prepare(cfg), workdir / "run").run()
    seconds = time.perf_counter() - started
    m = result.test
    return (m["accuracy"] if "accuracy" in m else m["rmse"]), seconds


def run(
    tables: list[str],
    seeds: int,
    extra: dict | None = None,
    models=("mlpbp", "sklearn_mlp", "hgb"),
    first_seed: int = 0,
) -> dict:
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    results = {}
    for name in tables:
        df, target, task = load(name)
        rows = {"task": task, "rows": len(df), "columns": df.shape[1] - 1}
        for model in models:
            rows[model] = {"score": [], "seconds": []}
        for seed in range(first_seed, first_seed + seeds):
            train, test = split(df, target, task, seed)
            if "mlpbp" in models:
                with tempfile.TemporaryDirectory(prefix="mlpbp-bench-") as tmp:
                    s, t = fit_mlpbp(train, test, target, seed, Path(tmp), extra)
                rows["mlpbp"]["score"].append(s)
                rows["mlpbp"]["seconds"].append(t)
            Xtr, Xte = for_sklearn(train.drop(columns=[target])), for_sklearn(test.drop(columns=[target]))
            for model, est in sklearn_models(Xtr, task, seed).items():
                if model not in models:
                    continue
                started = time.perf_counter()
                est.fit(Xtr, train[target])
                rows[model]["seconds"].append(time.perf_counter() - started)
                rows[model]["score"].append(score(task, test[target], est.predict(Xte)))
            print(
                f"{name} seed {seed}: "
                + ", ".join(f"{m} {rows[m]['score'][-1]:.4g} ({rows[m]['seconds'][-1]:.1f} s)" for m in models),
                file=sys.stderr,
                flush=True,
            )
        results[name] = rows
    return results


def _ms(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4g} ± {sd:.2g}"


def markdown(results: dict) -> str:
    lines = [
        "| table | rows × columns | metric | mlpbp default | scikit-learn MLP | HistGradientBoosting"
        " | fit s: mlpbp / MLP / HGB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        metric = "accuracy ↑" if r["task"] == "classification" else "RMSE ↓"
        times = " / ".join(f"{statistics.mean(r[m]['seconds']):.1f}" for m in ("mlpbp", "sklearn_mlp", "hgb"))
        lines.append(
            f"| {name} | {r['rows']} × {r['columns']} | {metric} | {_ms(r['mlpbp']['score'])} |"
            f" {_ms(r['sklearn_mlp']['score'])} | {_ms(r['hgb']['score'])} | {times} |"
        )
    cls = [n for n, r in results.items() if r["task"] == "classification"]
    reg = [n for n, r in results.items() if r["task"] == "regression"]
    mean = lambda n, m: statistics.mean(results[n][m]["score"])  # noqa: E731
    if cls:
        gap = statistics.mean(mean(n, "mlpbp") - mean(n, "hgb") for n in cls)
        lines.append(f"\nclassification: mlpbp − HGB accuracy, mean over tables: {gap:+.4f}")
    if reg:
        ratio = statistics.mean(mean(n, "mlpbp") / mean(n, "hgb") for n in reg)
        lines.append(f"regression: mlpbp / HGB RMSE, mean over tables: {ratio:.3f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--tables", default=",".join(TABLES))
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the raw results as JSON")
    ap.add_argument(
        "--mlpbp",
        type=json.loads,
        default={},
        help='config keys over mlpbp\'s default, as JSON: \'{"model": {"dropout": 0}}\'',
    )
    ap.add_argument(
        "--models", default="mlpbp,sklearn_mlp,hgb", help="which models to fit (a subset: no comparison table)"
    )
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    models = tuple(args.models.split(","))
    with threadpool_limits(1):
        results = run(args.tables.split(","), args.seeds, args.mlpbp, models, args.first_seed)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    if set(models) == {"mlpbp", "sklearn_mlp", "hgb"}:
        print(markdown(results))
    else:
        for name, r in results.items():
            print(name, ", ".join(f"{m} {_ms(r[m]['score'])}" for m in models))


if __name__ == "__main__":
    main()
