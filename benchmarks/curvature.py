"""Second-order work, measured: what each optimizer reaches per gradient-equivalent pass, L-BFGS
against scikit-learn's, and the cost of the top Hessian eigenvalue of the digits model.

    python benchmarks/curvature.py [--part table|sklearn|eigen|all] [--seeds 5]

- table: sgd, adam, lbfgs and newton_cg on sine, spirals and digits (the shipped configs; the
  other optimizers' settings below), the final training loss against gradient-equivalent
  passes = gradient passes + r × curvature products, r = (time of a full-data Gauss-Newton
  product) / (time of a full-data gradient), measured here on each problem's network and rows
  (mlpbp bench measures the same ratio for the Hessian product).
- sklearn: configs/digits-lbfgs.yaml against MLPClassifier(solver="lbfgs", hidden (128,),
  max_iter=200) on the same split and standardisation, test accuracy, mean of --seeds seeds.
- eigen: Lanczos on the Hessian of configs/digits.yaml's trained model over its training
  rows: products until the top Ritz value is within 1e-4 (relative) of its converged value.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import yaml

from mlpbp.engine.curvature import Curvature, lanczos
from mlpbp.run.config import config_from_dict, load_config
from mlpbp.run.prepare import prepare
from mlpbp.run.trainer import Trainer
from mlpbp.tools.hessian import float64_copy

ROOT = Path(__file__).resolve().parent.parent
SGD_ONLY = ("momentum", "nesterov", "learning_rate", "schedule", "batch_size", "weight_decay")
# Settings of the other optimizers per problem (sgd: the shipped config as it is).
METHODS = {
    "sine": {
        "adam": {"optimizer": "adam", "learning_rate": 0.01, "epochs": 200, "batch_size": 32},
        "lbfgs": {"optimizer": "lbfgs", "epochs": 10, "max_iter": 20, "dtype": "float64"},
        "newton_cg": None,  # configs/sine-newton.yaml
    },
    "spirals": {
        "adam": {"optimizer": "adam", "learning_rate": 0.005, "epochs": 300, "batch_size": 32, "schedule": "cosine"},
        "lbfgs": {"optimizer": "lbfgs", "epochs": 15, "max_iter": 20, "dtype": "float64"},
        "newton_cg": {"optimizer": "newton_cg", "epochs": 30, "damping": 0.01, "dtype": "float64"},
    },
    "digits": {
        "adam": None,  # configs/digits-adam.yaml
        "lbfgs": None,  # configs/digits-lbfgs.yaml
        "newton_cg": {"optimizer": "newton_cg", "epochs": 10, "damping": 0.01, "dtype": "float64"},
    },
}


def _config(problem: str, method: str, seed: int | None = None):
    """The shipped config for (problem, method), or the SGD one with its SGD keys swapped for
    METHODS' settings."""
    shipped = {"adam": "-adam", "lbfgs": "-lbfgs"} if problem == "digits" else {}
    if problem == "sine":
        shipped = {"newton_cg": "-newton"}
    if method in shipped or method == "sgd":
        d = yaml.safe_load((ROOT / "configs" / f"{problem}{shipped.get(method, '')}.yaml").read_text())
    else:
        d = yaml.safe_load((ROOT / "configs" / f"{problem}.yaml").read_text())
        d["train"] = {k: v for k, v in d["train"].items() if k not in SGD_ONLY} | METHODS[problem][method]
    if seed is not None:
        d["seed"] = seed
    return config_from_dict(d, base_dir=ROOT / "configs", name=f"{problem}-{method}")


def _product_ratio(cfg) -> float:
    data = prepare(cfg)
    trainer = Trainer(cfg, data, "/tmp/mlpbp-bench-unused")
    X, y = data.train
    op = Curvature(trainer.net, X, y, "gauss_newton")
    v = np.random.default_rng(0).standard_normal(op.shape[0])

    def timed(fn) -> float:
        fn()
        times = []
        for _ in range(7):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    return timed(lambda: op.matvec(v)) / timed(op.loss_and_grad)


def table(out_dir: Path) -> list[dict]:
    rows = []
    for problem in ("sine", "spirals", "digits"):
        ratio = None
        for method in ("sgd", "adam", "lbfgs", "newton_cg"):
            cfg = _config(problem, method)
            if ratio is None:
                ratio = _product_ratio(_config(problem, "newton_cg"))  # float64, as newton_cg runs
            started = time.perf_counter()
            result = Trainer(cfg, prepare(cfg), out_dir / f"{problem}-{method}").run()
            last = result.history[-1]
            passes = last["gradients"] + ratio * last["products"]
            metric = "accuracy" if "accuracy" in result.test else "r2"
            rows.append(
                {
                    "problem": problem,
                    "method": method,
                    "train_loss": last["train_loss"],
                    "gradients": last["gradients"],
                    "products": last["products"],
                    "ratio": ratio,
                    "passes": passes,
                    "test": result.test[metric],
                    "metric": metric,
                    "seconds": time.perf_counter() - started,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def sklearn_comparison(seeds: int) -> dict:
    from sklearn.neural_network import MLPClassifier

    ours, theirs = [], []
    for seed in range(seeds):
        cfg = _config("digits", "lbfgs", seed)
        data = prepare(cfg)
        result = Trainer(cfg, data, f"/tmp/mlpbp-bench-lbfgs-{seed}").run()
        ours.append(result.test["accuracy"])
        (X, y), (Xt, yt) = data.train, data.test
        clf = MLPClassifier(hidden_layer_sizes=(128,), solver="lbfgs", max_iter=200, random_state=seed)
        clf.fit(X, y)
        theirs.append(float(clf.score(Xt, yt)))
        print(json.dumps({"seed": seed, "mlpbp": ours[-1], "sklearn": theirs[-1]}), flush=True)
    return {
        "mlpbp": ours,
        "sklearn": theirs,
        "mlpbp_mean": statistics.mean(ours),
        "sklearn_mean": statistics.mean(theirs),
    }


def eigen_cost(out_dir: Path) -> dict:
    cfg = load_config(ROOT / "configs" / "digits.yaml")
    data = prepare(cfg)
    trainer = Trainer(cfg, data, out_dir / "digits")
    trainer.run()
    X, y = data.train
    op = Curvature(float64_copy(trainer.net), X.astype(np.float64), y, "hessian")
    tops: list[float] = []
    started = time.perf_counter()
    lanczos(
        op.matvec,
        np.random.default_rng(0).standard_normal(op.shape[0]),
        120,
        lambda run: tops.append(run.ritz()[0][-1]) and False,
    )
    seconds = time.perf_counter() - started
    final = tops[-1]
    within = next(i + 1 for i, t in enumerate(tops) if all(abs(u - final) <= 1e-4 * abs(final) for u in tops[i:]))
    return {
        "rows": int(X.shape[0]),
        "n_params": op.shape[0],
        "top_eigenvalue": final,
        "products_to_1e-4": within,
        "seconds_per_product": seconds / len(tops),
        "seconds_to_1e-4": within * seconds / len(tops),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="all", choices=("table", "sklearn", "eigen", "all"))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("/tmp/mlpbp-curvature-bench"))
    args = ap.parse_args()
    report = {}
    if args.part in ("eigen", "all"):
        report["eigen"] = eigen_cost(args.out)
        print(json.dumps(report["eigen"]), flush=True)
    if args.part in ("table", "all"):
        report["table"] = table(args.out)
    if args.part in ("sklearn", "all"):
        report["sklearn"] = sklearn_comparison(args.seeds)
        print(json.dumps({k: v for k, v in report["sklearn"].items() if k.endswith("mean")}), flush=True)


if __name__ == "__main__":
    main()
