"""Start-up time of the CLI against Typer's own import, measured in the same run.

    python benchmarks/startup.py [--runs 15]

For each command line the fastest of ``--runs`` fresh processes (the machine's other work
only ever slows a run, so the minimum is the cost): ``python -c "import typer"``,
``mlpbp --version``, ``mlpbp --help``, ``mlpbp train --help``, and the start-up part of
``mlpbp train configs/xor.yaml``: from the process start to the first epoch (what
``python -X importtime`` and the trainer's own clock cannot see apart: the run is timed whole
with 1 epoch and with 2, and the start-up is the first minus the one epoch it adds).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MLPBP = [sys.executable, "-m", "mlpbp"]


def fastest(cmd: list[str], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    typer_s = fastest([sys.executable, "-c", "import typer"], args.runs)
    out = {"import_typer_s": typer_s}
    for name, argv in (("version", ["--version"]), ("help", ["--help"]), ("train_help", ["train", "--help"])):
        t = fastest([*MLPBP, *argv], args.runs)
        out[f"{name}_s"], out[f"{name}_ratio"] = t, t / typer_s
    with tempfile.TemporaryDirectory() as tmp:
        train = [*MLPBP, "train", str(ROOT / "configs" / "xor.yaml"), "--out", tmp, "--quiet", "--overwrite"]
        one = fastest([*train, "--set", "train.epochs=1"], max(3, args.runs // 3))
        two = fastest([*train, "--set", "train.epochs=2"], max(3, args.runs // 3))
    out["train_xor_1_epoch_s"], out["train_xor_startup_s"] = one, one - (two - one)
    print(json.dumps({k: round(v, 3) for k, v in out.items()}))


if __name__ == "__main__":
    main()
