"""Write the sample outputs the documentation shows, by running the real CLI and Python examples.

    python docs/samples.py            # every sample (a few minutes on 2 cores)
    python docs/samples.py gradcheck  # only the samples whose name contains "gradcheck"

Each sample is a shell command run in a scratch folder that holds the repository's configs/,
datasets/ and tests/fixtures/ (so paths print as a user's would); its stdout and stderr, in the
order they came, go to docs/samples/NAME.txt behind a `$ command` line, and the pages include
them with `--8<--`. The Python examples docs/samples/*.py run the same way, into NAME.out.txt.
The pictures of `mlpbp plot` are copied to docs/assets/, and README.md's
`<!-- sample: NAME -->` blocks are refilled from the same files (GitHub shows the README
without the site's includes). Samples run in order, later ones using the runs earlier ones
wrote, so a selection must include what it depends on. Timings and thread choices are whatever
this machine gave; rerun the script after changing what a command prints, and commit its
outputs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SAMPLES = REPO / "docs" / "samples"
ASSETS = REPO / "docs" / "assets"

NEW_CUSTOMERS = """\
customer_id,signup,plan,region,age,monthly_spend,support_calls,autopay
C10000,2023-09-10,pro,east,37,28.01,2,false
C10001,2022-07-07,basic,south,,NA,3,true
C10002,2022-11-21,team,west,42,61.39,1,
"""

# (name, command, lines kept: None for all, else (first, last) with "..." between). Order
# matters: later commands use the runs earlier ones wrote.
COMMANDS: list[tuple[str, str, tuple[int, int] | None]] = [
    ("train-digits", "mlpbp train configs/digits.yaml", (5, 24)),
    ("train-iris", "mlpbp train configs/iris.yaml --quiet", None),
    ("train-digits-resnet", "mlpbp train configs/digits-resnet.yaml", (2, 22)),
    ("evaluate-iris", "mlpbp evaluate runs/iris/model.npz datasets/iris.csv", None),
    ("evaluate-iris-json", "mlpbp evaluate runs/iris/model.npz datasets/iris.csv --json", None),
    ("predict-iris", "mlpbp predict runs/iris/model.npz datasets/iris.csv | head -4", None),
    ("inspect-digits", "mlpbp inspect runs/digits/model.npz", None),
    ("export-iris", "mlpbp export runs/iris/model.npz", None),
    ("data-customers", "mlpbp data configs/customers.yaml", None),
    ("train-customers", "mlpbp train configs/customers.yaml --quiet", None),
    (
        "train-customers-unweighted",
        "mlpbp train configs/customers.yaml --quiet --set train.class_weight=null --out runs/unweighted",
        None,
    ),
    ("predict-customers", "cat new.csv && mlpbp predict runs/customers/model.npz new.csv", None),
    ("data-articles", "mlpbp data configs/articles.yaml", None),
    ("train-articles", "mlpbp train configs/articles.yaml --quiet", None),
    ("predict-articles", "mlpbp predict runs/articles/model.npz datasets/articles.csv | head -5", None),
    ("gradcheck-spirals", "mlpbp gradcheck configs/spirals.yaml", None),
    ("gradcheck-all", "mlpbp gradcheck", None),
    (
        "hessian-iris",
        "mlpbp hessian tests/fixtures/v0.1-iris-model.npz tests/fixtures/iris-rows.csv"
        " --top-k 3 --bottom-k 1 --trace --density",
        None,
    ),
    ("sharpness-sine", "mlpbp train configs/sine.yaml --set train.sharpness_every=10 --set train.epochs=30", None),
    ("train-spirals", "mlpbp train configs/spirals.yaml --quiet", None),
    ("plot-spirals", "mlpbp plot runs/spirals", None),
    ("plot-iris", "mlpbp plot runs/iris", None),
    ("too-large", "mlpbp train configs/digits.yaml --set 'model.hidden=[1000000000000]'", None),
    ("mpi-digits", "mpiexec -n 2 mlpbp train configs/digits.yaml --set train.epochs=5 --out runs/mpi", (12, 0)),
]

# (picture written by a command above, where the docs show it)
PICTURES = [("runs/spirals/regions.png", "spirals-regions.png"), ("runs/iris/curves.png", "iris-curves.png")]


def trimmed(text: str, keep: tuple[int, int] | None) -> str:
    lines = text.splitlines()
    if keep is None or len(lines) <= sum(keep) + 1:
        return text
    first, last = keep
    return "\n".join(lines[:first] + ["  ..."] + (lines[-last:] if last else [])) + "\n"


# Samples whose point is a failure, and the exit code they must end with; every other must succeed.
EXIT_CODES = {"too-large": 2}


def run(name: str, command: str, cwd: Path, env: dict) -> str:
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # `| head` closes the pipe early: SIGPIPE (141) upstream is how such a command ends.
    if done.returncode not in (EXIT_CODES.get(name, 0), 141):
        hint = "a selection must include the samples it uses"
        sys.exit(f"{name}: `{command}` exited {done.returncode} ({hint}):\n{done.stdout}")
    return done.stdout


def readme_block(name: str) -> str:
    """The Markdown README.md shows for a sample: a console block, or a script and its output."""
    if name.endswith(".py"):
        code = (SAMPLES / name).read_text().rstrip()
        out = (SAMPLES / name.replace(".py", ".out.txt")).read_text().rstrip()
        return f"```python\n{code}\n```\n\n```text\n{out}\n```"
    return f"```console\n{(SAMPLES / f'{name}.txt').read_text().rstrip()}\n```"


def refill_readme() -> None:
    text = README.read_text()
    pattern = re.compile(r"(<!-- sample: (\S+) -->\n).*?(\n<!-- /sample -->)", re.S)
    README.write_text(pattern.sub(lambda m: m[1] + readme_block(m[2]) + m[3], text))


def main(selected: list[str]) -> None:
    SAMPLES.mkdir(exist_ok=True)
    ASSETS.mkdir(exist_ok=True)
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    env.pop("MLPBP_DEBUG", None)
    env["PYTHONSAFEPATH"] = "1"  # run the installed package, never a source tree on sys.path
    with tempfile.TemporaryDirectory(prefix="mlpbp-samples-") as tmp:
        work = Path(tmp)
        for name in ("configs", "datasets"):
            (work / name).symlink_to(REPO / name)
        (work / "tests").mkdir()
        (work / "tests" / "fixtures").symlink_to(REPO / "tests" / "fixtures")
        (work / "new.csv").write_text(NEW_CUSTOMERS)
        for name, command, keep in COMMANDS:
            if selected and not any(s in name for s in selected):
                continue
            print(f"{name}: {command}", flush=True)
            out = trimmed(run(name, command, work, env), keep)
            (SAMPLES / f"{name}.txt").write_text(f"$ {command}\n{out}")
        for script in sorted(SAMPLES.glob("*.py")):
            if selected and not any(s in script.stem for s in selected):
                continue
            print(f"{script.stem}: python {script.name}", flush=True)
            out = run(script.stem, f"{sys.executable} {script}", work, env)
            (SAMPLES / f"{script.stem}.out.txt").write_text(out)
        for source, target in PICTURES:
            if (work / source).exists():
                shutil.copyfile(work / source, ASSETS / target)
    refill_readme()


if __name__ == "__main__":
    main(sys.argv[1:])
