"""mlpbp tune's acceptance numbers on the shipped digits recipe (configs/digits-tune.yaml):

1. the shipped configs/digits.yaml, trained once: its validation loss and accuracy;
2. 30 trials of TPE (seed 0) with median pruning: the best trial's validation loss and accuracy,
   and the epochs all trials trained;
3. the same study without pruning (tune.pruner: none): the same, for the epochs saved and the
   best value reached.

    python benchmarks/tune.py [--trials 30] [--out runs/bench-tune] [--json]

Each study starts fresh in its own folder (SQLite). Run on a quiet machine for the seconds;
the values and epoch counts do not depend on the load (one BLAS thread: digits' steps are small).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from pathlib import Path

from mlpbp.run.config import load_config
from mlpbp.run.trainer import train
from mlpbp.tools.tune import tune

ROOT = Path(__file__).resolve().parent.parent


def _val_accuracy(run_dir: str, epoch: int | None = None) -> float:
    with open(Path(run_dir) / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    row = rows[-1] if epoch is None else next(r for r in rows if int(r["epoch"]) == epoch)
    return float(row["val_accuracy"])


def study(trials: int, out: Path, pruner: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    r = tune(ROOT / "configs/digits-tune.yaml", [f"tune.pruner={pruner}"], trials=trials, out_dir=out, plots=False)
    best = r.best
    return {
        "pruner": pruner,
        "trials": r.counts,
        "epochs": r.epochs,
        "best_trial": best.number,
        "best_val_loss": best.value,
        "best_val_accuracy": _val_accuracy(best.out_dir),
        "best_params": best.params,
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--out", type=Path, default=Path("runs/bench-tune"))
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    shipped = train(load_config(ROOT / "configs/digits.yaml"), a.out / "shipped")
    base = {"val_loss": shipped.history[-1]["val_loss"], "val_accuracy": shipped.history[-1]["val_accuracy"]}
    median = study(a.trials, a.out / "median", "median")
    none = study(a.trials, a.out / "none", "none")
    result = {
        "shipped": base,
        "median": median,
        "none": none,
        "epochs_saved": 1 - median["epochs"] / none["epochs"],
        "best_gap": median["best_val_loss"] / none["best_val_loss"] - 1,
    }
    if a.json:
        print(json.dumps(result, indent=1))
        return
    print(f"shipped configs/digits.yaml: val_loss {base['val_loss']:.4f}, val_accuracy {base['val_accuracy']:.4f}")
    for s in (median, none):
        print(
            f"pruner {s['pruner']:6}: {s['trials']}, {s['epochs']} epochs, best trial {s['best_trial']}:"
            f" val_loss {s['best_val_loss']:.4f}, val_accuracy {s['best_val_accuracy']:.4f}"
            f" ({s['seconds']:.0f} s) {s['best_params']}"
        )
    print(f"median pruning: {result['epochs_saved']:.1%} fewer epochs; best val_loss {result['best_gap']:+.2%} vs none")


if __name__ == "__main__":
    main()
