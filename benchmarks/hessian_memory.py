"""Peak memory of `mlpbp hessian --top-k 2` on a network of about 4M parameters
(784-2048-1024-256-10, relu, cross-entropy) over synthetic labelled rows.

    python benchmarks/hessian_memory.py [--rows 1000] [--top-k 2]

The model file is built through the API (random He-initialised weights, standardisation of the
rows), the rows written as a CSV; `mlpbp hessian` then runs in a child process, whose peak
resident set (ru_maxrss) is reported with the products, the seconds and the estimate that
``mlpbp.tools.hessian.hessian_bytes`` checked before allocating.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from mlpbp.data.preprocessing import Preprocessor, Standardizer
from mlpbp.engine.network import MLP
from mlpbp.run.model import TrainedModel
from mlpbp.run.model_file import save_model
from mlpbp.tools.hessian import HessianOptions, hessian_bytes

WIDTHS = [784, 2048, 1024, 256, 10]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--top-k", type=int, default=2)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.rows, WIDTHS[0]))
    labels = rng.integers(0, WIDTHS[-1], args.rows)
    names = [f"x{j}" for j in range(WIDTHS[0])]
    classes = [str(c) for c in range(WIDTHS[-1])]
    net = MLP(WIDTHS, "relu", "cross_entropy", seed=0, dtype="float32", task="classification")
    pre = Preprocessor.numeric(names, Standardizer().fit(X))
    with tempfile.TemporaryDirectory() as tmp:
        model, rows = Path(tmp) / "model.npz", Path(tmp) / "rows.csv"
        save_model(TrainedModel(net, pre, None, classes, names, "label"), model)
        with rows.open("w") as f:
            f.write(",".join(names) + ",label\n")
            for x, c in zip(X, labels):
                f.write(",".join(f"{v:.6g}" for v in x) + f",{c}\n")
        cmd = [sys.executable, "-m", "mlpbp", "hessian", str(model), str(rows), "--top-k", str(args.top_k), "--json"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(proc.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux: KiB
    r = json.loads(proc.stdout)
    estimate = hessian_bytes(WIDTHS, args.rows, HessianOptions(top_k=args.top_k))
    print(
        json.dumps(
            {
                "widths": WIDTHS,
                "n_params": r["n_params"],
                "rows": r["rows"],
                "top_eigenvalues": r["top_eigenvalues"],
                "lanczos": r["lanczos"],
                "products": r["products"],
                "seconds": round(r["seconds"], 1),
                "peak_rss_mib": round(peak / 2**20),
                "estimate_mib": round(estimate / 2**20),
            }
        )
    )


if __name__ == "__main__":
    main()
