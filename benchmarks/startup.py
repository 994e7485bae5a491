"""Start-up time of the CLI against Typer's own import, measured in the same run.

    python benchmarks/startup.py [--runs 15]

``python -c "import typer"``, ``mlpbp --version``, ``mlpbp --help`` and ``mlpbp train --help``
are run interleaved, one after the other in each of ``--runs`` rounds of fresh processes, and
the fastest of each is kept (the machine's other work only ever slows a run, so the minimum is
the cost, and interleaving gives every command line the same load). Bytecode caches are
written by a first, untimed round, as ``pip install`` writes them (``PYTHONDONTWRITEBYTECODE``
is dropped for these processes: with it, every start compiles every mlpbp module it loads).
Then the start-up part of ``mlpbp train configs/xor.yaml``: from the process start to the first
epoch (what ``python -X importtime`` and the trainer's own clock cannot see apart: the run is
timed whole with 1 epoch and with 2, and the start-up is the first minus the one epoch it adds).
The load average before and after is printed with the times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MLPBP = [sys.executable, "-m", "mlpbp"]


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _seconds(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=ENV)
    return time.perf_counter() - t0


def fastest(cmds: dict[str, list[str]], runs: int) -> dict[str, float]:
    """The fastest of ``runs`` rounds for each command line, the lines run in turn each round."""
    for cmd in cmds.values():  # the untimed round: bytecode caches written
        _seconds(cmd)
    best = dict.fromkeys(cmds, float("inf"))
    for _ in range(runs):
        for name, cmd in cmds.items():
            best[name] = min(best[name], _seconds(cmd))
    return best


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    load_before = _load()
    cmds = {
        "import_typer": [sys.executable, "-c", "import typer"],
        "version": [*MLPBP, "--version"],
        "help": [*MLPBP, "--help"],
        "train_help": [*MLPBP, "train", "--help"],
    }
    best = fastest(cmds, args.runs)
    typer_s = best.pop("import_typer")
    out = {"import_typer_s": typer_s}
    for name, t in best.items():
        out[f"{name}_s"], out[f"{name}_ratio"] = t, t / typer_s
    with tempfile.TemporaryDirectory() as tmp:
        train = [*MLPBP, "train", str(ROOT / "configs" / "xor.yaml"), "--out", tmp, "--quiet", "--overwrite"]
        runs = fastest({e: [*train, "--set", f"train.epochs={e}"] for e in (1, 2)}, max(3, args.runs // 3))
    one, two = runs[1], runs[2]
    out["train_xor_1_epoch_s"], out["train_xor_startup_s"] = one, one - (two - one)
    out["load_before"], out["load_after"] = load_before, _load()
    print(json.dumps({k: (round(v, 3) if v is not None else None) for k, v in out.items()}))


if __name__ == "__main__":
    main()
