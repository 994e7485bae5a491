"""Data-parallel training under `mpiexec -n 2` (MPICH from the `mpi` extra).

- 2 ranks and 1 rank, same config and global batch: parameters equal to 1e-12 relative in
  float64 and 1e-5 in float32 after 3 epochs, history.csv metrics to the same tolerance; every
  rank holds bit-identical parameters at the end.
- Ctrl-C (SIGINT to mpiexec) and --resume under 2 ranks: bit-identical to an uninterrupted
  2-rank run; every rank exits 130.
- lbfgs and newton_cg: 2 ranks end where 1 process does (1e-10 relative, float64), every rank
  bit-identical.
- SIGKILL of one rank: the job ends non-zero within 30 s.
- Bad input (ranks with different configs, batch_size < ranks): one line, exit 2 on every rank.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import PYTHON, subprocess_env

pytest.importorskip("mpi4py", reason="the mpi extra is not installed")
pytestmark = pytest.mark.skipif(os.name != "posix", reason="MPI jobs and POSIX signals")

MPIEXEC = shutil.which("mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
TIMEOUT = 180  # seconds for any one MPI job; the machine is small and shared

# 210 training rows in batches of 19: the last batch has one row, so one rank gets none.
CONFIG = """\
seed: 4
data: {dataset: moons, n_samples: 300, noise: 0.2}
model: {hidden: [8, 6], activation: tanh}
train: {epochs: 3, batch_size: 19, learning_rate: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.001,
        schedule: cosine, dtype: DTYPE}
"""

# Reports each rank's exit status on stderr, so a test can see every rank's, not just the job's.
# `trap : INT`: the shell outlives Ctrl-C (its child, mlpbp, gets the default handling back).
EACH_RANK = 'trap : INT; python="$1"; shift; "$python" -m mlpbp "$@"; s=$?; echo "rank exit $s" >&2; exit $s'


def mpi(n: int, *args: str, timeout: float = TIMEOUT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MPIEXEC, "-n", str(n), "sh", "-c", EACH_RANK, "sh", PYTHON, *args],
        env={**subprocess_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rank_exits(stderr: str) -> list[int]:
    return sorted(int(line.split()[-1]) for line in stderr.splitlines() if line.startswith("rank exit"))


def messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("rank exit")]


def params(path: Path) -> dict[str, np.ndarray]:
    with np.load(path / "model.npz") as z:
        return {k: z[k] for k in z.files if k.startswith("param.")}


def history(path: Path) -> list[dict]:
    with (path / "history.csv").open() as f:
        return list(csv.DictReader(f))


def write(tmp: Path, name: str, text: str) -> Path:
    (tmp / name).write_text(text)
    return tmp / name


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_two_ranks_train_as_one_process_does(tmp_path, dtype, rtol):
    cfg = write(tmp_path, "c.yaml", CONFIG.replace("DTYPE", dtype))
    one = mpi(1, "train", str(cfg), "--out", str(tmp_path / "one"), "--json")
    two = mpi(2, "train", str(cfg), "--out", str(tmp_path / "two"), "--json")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert rank_exits(two.stderr) == [0, 0]
    report = json.loads(two.stdout)  # only rank 0 prints: one JSON object
    assert report["ranks"] == 2 and json.loads(one.stdout)["ranks"] == 1
    assert report["comm_seconds"] > 0 and report["compute_seconds"] > 0
    assert all(e["comm_seconds"] >= 0 for e in report["epochs"])

    p1, p2 = params(tmp_path / "one"), params(tmp_path / "two")
    assert p1.keys() == p2.keys() and p1
    for k in p1:
        assert p2[k].dtype == np.dtype(dtype)
        scale = np.max(np.abs(p1[k]))
        assert np.max(np.abs(p1[k] - p2[k])) <= rtol * scale, k
    h1, h2 = history(tmp_path / "one"), history(tmp_path / "two")
    assert len(h1) == len(h2) == 3
    for r1, r2 in zip(h1, h2):
        assert r1.keys() == r2.keys()
        for k in r1:
            assert float(r2[k]) == pytest.approx(float(r1[k]), rel=rtol, abs=0), k
    # only rank 0 writes: the second rank left nothing in the current directory or elsewhere
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        ["model.npz", "history.csv", "config.yaml", "checkpoint.npz"]
    )


def test_dropout_under_two_ranks_trains_as_one_process_does(tmp_path):
    """Each rank takes its rows of the whole batch's dropout mask, and the rank with no row of
    the one-row last batch still draws it: 2 ranks draw the masks one process draws."""
    text = CONFIG.replace("DTYPE", "float64").replace("activation: tanh}", "activation: tanh, dropout: 0.3}")
    cfg = write(tmp_path, "c.yaml", text)
    one = mpi(1, "train", str(cfg), "--out", str(tmp_path / "one"), "-q")
    two = mpi(2, "train", str(cfg), "--out", str(tmp_path / "two"), "-q")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    p1, p2 = params(tmp_path / "one"), params(tmp_path / "two")
    assert p1.keys() == p2.keys() and p1
    for k in p1:
        assert np.max(np.abs(p1[k] - p2[k])) <= 1e-12 * np.max(np.abs(p1[k])), k


@pytest.mark.parametrize(
    "optimizer", ["{optimizer: lbfgs, max_iter: 15}", "{optimizer: newton_cg, batch_size: 70, cg_max_iter: 20}"]
)
def test_second_order_methods_under_two_ranks_end_where_one_process_does(tmp_path, optimizer):
    # Loss, gradient, curvature products and the stop decision are summed over the ranks, so
    # both take the very steps one process takes (up to the sums' rounding).
    text = CONFIG.split("train:")[0] + f"train: {{epochs: 2, weight_decay: 0.001, dtype: float64, {optimizer[1:-1]}}}\n"
    cfg = write(tmp_path, "c.yaml", text)
    one = mpi(1, "train", str(cfg), "--out", str(tmp_path / "one"), "--json")
    two = mpi(2, "train", str(cfg), "--out", str(tmp_path / "two"), "--json")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert rank_exits(two.stderr) == [0, 0]  # a rank that differed would have refused to save
    r1, r2 = json.loads(one.stdout), json.loads(two.stdout)
    assert r2["ranks"] == 2 and r2["epochs"][-1]["products"] == r1["epochs"][-1]["products"]
    assert r2["epochs"][-1]["train_loss"] < r1["epochs"][0]["train_loss"] * 1.0001
    p1, p2 = params(tmp_path / "one"), params(tmp_path / "two")
    for k in p1:
        assert np.max(np.abs(p1[k] - p2[k])) <= 1e-10 * np.max(np.abs(p1[k])), k
    for a, b in zip(history(tmp_path / "one"), history(tmp_path / "two")):
        assert float(b["train_loss"]) == pytest.approx(float(a["train_loss"]), rel=1e-10)


# Each rank writes its own final parameters, to compare them byte for byte.
RANK_DRIVER = """\
import sys
import numpy as np
from mlpbp.run.config import load_config
from mlpbp.run.distributed import world
from mlpbp.run.prepare import prepare
from mlpbp.run.trainer import Trainer
comm = world()
cfg = load_config(sys.argv[1])
r = Trainer(cfg, prepare(cfg), sys.argv[2], comm=comm).run()
np.savez(f"{sys.argv[2]}/rank{comm.rank}.npz", **r.model.net.params)
"""


def test_every_rank_ends_with_bit_identical_parameters(tmp_path):
    cfg = write(tmp_path, "c.yaml", CONFIG.replace("DTYPE", "float32"))
    out = tmp_path / "out"
    proc = subprocess.run(
        [MPIEXEC, "-n", "2", PYTHON, "-c", RANK_DRIVER, str(cfg), str(out)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    with np.load(out / "rank0.npz") as a, np.load(out / "rank1.npz") as b:
        assert a.files == b.files and a.files
        for k in a.files:
            assert a[k].tobytes() == b[k].tobytes(), k


# ~40 epochs of 11 steps with per-epoch metrics: long enough to interrupt mid-run.
SIGINT_CONFIG = """\
seed: 7
data: {dataset: moons, n_samples: 300}
model: {hidden: [16]}
train: {epochs: 400, batch_size: 2, momentum: 0.9, schedule: step, step_size: 50, dtype: float64}
"""


def test_ctrl_c_and_resume_under_two_ranks_is_bit_identical(tmp_path):
    cfg = write(tmp_path, "s.yaml", SIGINT_CONFIG)
    ref = mpi(2, "train", str(cfg), "--out", str(tmp_path / "ref"), "-q")
    assert ref.returncode == 0, ref.stderr

    out = tmp_path / "out"
    proc = subprocess.Popen(
        [MPIEXEC, "-n", "2", "sh", "-c", EACH_RANK, "sh", PYTHON, "train", str(cfg), "--out", str(out), "-q"],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        end = time.monotonic() + TIMEOUT
        while not (out / "checkpoint.npz").exists():  # the first epoch is done
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < end, "no checkpoint appeared"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert rank_exits(stderr) == [130, 130], stderr
    ours = [m for m in messages(stderr) if not m.startswith("[mpiexec")]  # Hydra says it forwards Ctrl-C
    assert len(ours) == 1 and "interrupted at epoch" in ours[0] and "--resume" in ours[0], stderr
    assert not (out / "model.npz").exists()

    resumed = mpi(2, "train", str(cfg), "--out", str(out), "--resume", "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "history.csv").read_bytes() == (tmp_path / "ref" / "history.csv").read_bytes()
    a, b = params(out), params(tmp_path / "ref")
    assert a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)


def test_a_killed_rank_ends_the_job_within_30_seconds(tmp_path):
    cfg = write(tmp_path, "s.yaml", SIGINT_CONFIG)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [MPIEXEC, "-n", "2", PYTHON, "-m", "mlpbp", "train", str(cfg), "--out", str(out), "-q"],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        end = time.monotonic() + TIMEOUT
        while not (out / "checkpoint.npz").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < end, "no checkpoint appeared"
            time.sleep(0.01)
        ranks = subprocess.run(["pgrep", "-P", str(_proxy(proc.pid))], capture_output=True, text=True).stdout.split()
        assert len(ranks) == 2, ranks
        os.kill(int(max(ranks, key=int)), signal.SIGKILL)
        killed = time.monotonic()
        output, _ = proc.communicate(timeout=30)
        took = time.monotonic() - killed
    finally:
        proc.kill()
    assert proc.returncode != 0 and took < 30, output
    assert "KILLED" in output or "signal 9" in output, output


def _proxy(mpiexec_pid: int) -> int:
    """Hydra's proxy process, the ranks' parent."""
    children = subprocess.run(["pgrep", "-P", str(mpiexec_pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 1, children
    return int(children[0])


def test_ranks_with_different_configs_stop_with_one_line_exit_2_everywhere(tmp_path):
    a = write(tmp_path, "a.yaml", CONFIG.replace("DTYPE", "float64"))
    text = CONFIG.replace("DTYPE", "float64")
    b = write(tmp_path, "b.yaml", text.replace("learning_rate: 0.1", "learning_rate: 0.2"))
    out = str(tmp_path / "out")
    proc = subprocess.run(
        [MPIEXEC, "-n", "1", "sh", "-c", EACH_RANK, "sh", PYTHON, "train", str(a), "--out", out]
        + [":", "-n", "1", "sh", "-c", EACH_RANK, "sh", PYTHON, "train", str(b), "--out", out],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert rank_exits(proc.stderr) == [2, 2], proc.stderr
    lines = messages(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "rank 1 sees a different config" in lines[0]
    assert "train.learning_rate: 0.1 on rank 0, 0.2 on rank 1" in lines[0]
    assert not (tmp_path / "out").exists()


def test_batch_smaller_than_the_ranks_is_one_line_exit_2_everywhere(tmp_path):
    cfg = write(tmp_path, "c.yaml", CONFIG.replace("DTYPE", "float64"))
    proc = mpi(2, "train", str(cfg), "--out", str(tmp_path / "out"), "--set", "train.batch_size=1")
    assert rank_exits(proc.stderr) == [2, 2], proc.stderr
    lines = messages(proc.stderr)
    assert len(lines) == 1 and "train.batch_size: 1 is smaller than the 2 MPI ranks" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


# ---- tables in files, read lazily ---------------------------------------------------------------


def lazy_config(tmp: Path, folder: Path) -> Path:
    text = f"seed: 1\ndata: {{path: {folder}}}\nmodel: {{hidden: [10]}}\n"
    return write(tmp, "lazy.yaml", text + "train: {epochs: 3, batch_size: 40, dtype: float64}\n")


def npy_pair(folder: Path, n: int = 700, y_rows: int | None = None) -> Path:
    rng = np.random.default_rng(3)
    X = rng.normal(2.0, 3.0, size=(n, 5)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 4).astype(np.int64)
    folder.mkdir()
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", y[:y_rows])
    return folder


def test_an_npy_pair_under_two_ranks_trains_as_one_process_does(tmp_path):
    cfg = lazy_config(tmp_path, npy_pair(tmp_path / "data"))
    one = mpi(1, "train", str(cfg), "--out", str(tmp_path / "one"), "-q")
    two = mpi(2, "train", str(cfg), "--out", str(tmp_path / "two"), "-q")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    p1, p2 = params(tmp_path / "one"), params(tmp_path / "two")
    for k in p1:
        assert np.max(np.abs(p1[k] - p2[k])) <= 1e-12 * np.max(np.abs(p1[k])), k
    for r1, r2 in zip(history(tmp_path / "one"), history(tmp_path / "two")):
        for k in r1:
            assert float(r2[k]) == pytest.approx(float(r1[k]), rel=1e-12, abs=0), k


def test_a_parquet_folder_under_two_ranks_trains_as_one_process_does_and_leaves_nothing(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    npy = npy_pair(tmp_path / "npy")
    X, y = np.load(npy / "X.npy"), np.load(npy / "y.npy")
    folder = tmp_path / "pq"
    folder.mkdir()
    for k in range(3):  # the first rank on the machine spills these once into a scratch folder
        part = slice(k * len(X) // 3, (k + 1) * len(X) // 3)
        table = pa.table({**{f"x{j}": X[part, j] for j in range(X.shape[1])}, "y": y[part]})
        pq.write_table(table, folder / f"{k}.parquet", row_group_size=50)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    cfg = lazy_config(tmp_path, folder)
    one = mpi(1, "train", str(cfg), "--out", str(tmp_path / "one"), "-q", env={"TMPDIR": str(scratch)})
    two = mpi(2, "train", str(cfg), "--out", str(tmp_path / "two"), "-q", env={"TMPDIR": str(scratch)})
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    p1, p2 = params(tmp_path / "one"), params(tmp_path / "two")
    for k in p1:
        assert np.max(np.abs(p1[k] - p2[k])) <= 1e-12 * np.max(np.abs(p1[k])), k
    assert list(scratch.iterdir()) == []  # no scratch folder or file left behind

    cells = {f"x{j}": pa.array([1.0, None if j == 2 else 2.0], pa.float32()) for j in range(5)}
    pq.write_table(pa.table({**cells, "y": pa.array([0, 1], pa.int64())}), folder / "9.parquet")
    bad = mpi(2, "train", str(cfg), "--out", str(tmp_path / "bad"), env={"TMPDIR": str(scratch)})
    assert rank_exits(bad.stderr) == [2, 2], bad.stderr
    lines = messages(bad.stderr)
    assert len(lines) == 1 and "9.parquet: column 'x2' has empty (null) values in row group 0" in lines[0], lines
    assert list(scratch.iterdir()) == []


def test_bad_folders_are_one_line_exit_2_on_every_rank(tmp_path):
    cfg = lazy_config(tmp_path, npy_pair(tmp_path / "data", y_rows=699))
    proc = mpi(2, "train", str(cfg), "--out", str(tmp_path / "out"))
    assert rank_exits(proc.stderr) == [2, 2], proc.stderr
    lines = messages(proc.stderr)
    assert len(lines) == 1 and "X.npy has 700 rows but y.npy has 699 rows" in lines[0], proc.stderr

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    folder = tmp_path / "pq"
    folder.mkdir()
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": [0, 1]}), folder / "1.parquet")
    pq.write_table(pa.table({"a": [1, 2], "b": [0, 1]}), folder / "2.parquet")
    cfg = lazy_config(tmp_path, folder)
    proc = mpi(2, "train", str(cfg), "--out", str(tmp_path / "out"))
    assert rank_exits(proc.stderr) == [2, 2], proc.stderr
    lines = messages(proc.stderr)
    assert len(lines) == 1 and "2.parquet has another schema than 1.parquet (column 'a': double vs int64)" in lines[0]
    assert not (tmp_path / "out").exists()


def test_hessian_under_two_ranks_sums_its_products_as_one_process_does(tmp_path):
    from mlpbp.data import bundled_path

    cfg = write(
        tmp_path, "iris.yaml", "data: {dataset: iris}\nmodel: {hidden: [5]}\ntrain: {epochs: 5, dtype: float64}\n"
    )
    trained = mpi(1, "train", str(cfg), "--out", str(tmp_path / "run"), "-q")
    assert trained.returncode == 0, trained.stderr
    args = ["hessian", str(tmp_path / "run" / "model.npz"), str(bundled_path("iris")), "--top-k", "2", "--trace"]
    one, two = mpi(1, *args, "--json"), mpi(2, *args, "--json", "--batch-size", "7")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    a, b = json.loads(one.stdout), json.loads(two.stdout)  # rank 0 alone prints
    assert a["rows"] == b["rows"] == 150
    np.testing.assert_allclose(b["top_eigenvalues"], a["top_eigenvalues"], rtol=1e-9)
    assert b["trace"]["estimate"] == pytest.approx(a["trace"]["estimate"], rel=1e-9)


# ---- per-row weights (data.weight) --------------------------------------------------------------


def weighted_rows(n: int = 300, seed: int = 8):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    y = (X[:, 0] - X[:, 1] * X[:, 2] > 0).astype(np.int64)
    w = rng.uniform(0.0, 3.0, n)
    w[rng.choice(n, 20, replace=False)] = 0.0  # rows that weigh nothing, so a rank's share may weigh 0
    return X, y, w


@pytest.mark.parametrize("optimizer", ["sgd", "lbfgs"])
def test_weighted_rows_under_two_ranks_train_as_one_process_does(tmp_path, optimizer):
    # The ranks sum weights, not rows: each rank's weighted mean counts by its share of the
    # batch's weight. 210 training rows in batches of 19: the last batch has one row.
    X, y, w = weighted_rows()
    with (tmp_path / "w.csv").open("w") as f:
        f.write("a,b,c,w,label\n")
        f.writelines(
            f"{float(r[0])!r},{float(r[1])!r},{float(r[2])!r},{float(wi)!r},{yi}\n" for r, wi, yi in zip(X, w, y)
        )
    keys = "batch_size: 19, learning_rate: 0.1, momentum: 0.9" if optimizer == "sgd" else "max_iter: 15"
    text = (
        "seed: 4\ndata: {path: w.csv, target: label, weight: w}\nmodel: {hidden: [8, 6], activation: tanh}\n"
        f"train: {{epochs: 3, optimizer: {optimizer}, weight_decay: 0.001, dtype: float64, {keys}}}\n"
    )
    cfg = write(tmp_path, "c.yaml", text)
    one = mpi(1, "train", str(cfg), "--out", str(tmp_path / "one"), "-q")
    two = mpi(2, "train", str(cfg), "--out", str(tmp_path / "two"), "-q")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert rank_exits(two.stderr) == [0, 0]
    # L-BFGS's line search and curvature pairs amplify the sums' rounding over 45 iterations
    tol = 1e-12 if optimizer == "sgd" else 1e-9
    p1, p2 = params(tmp_path / "one"), params(tmp_path / "two")
    for k in p1:
        assert np.max(np.abs(p1[k] - p2[k])) <= tol * np.max(np.abs(p1[k])), k
    for r1, r2 in zip(history(tmp_path / "one"), history(tmp_path / "two")):
        for k in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
            assert float(r2[k]) == pytest.approx(float(r1[k]), rel=tol, abs=0), k


def test_a_weighted_parquet_folder_under_two_ranks_trains_as_one_process_does(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    X, y, w = weighted_rows(400, seed=9)
    folder = tmp_path / "pq"
    folder.mkdir()
    for k in range(2):
        part = slice(k * 200, (k + 1) * 200)
        table = pa.table({"a": X[part, 0], "b": X[part, 1], "c": X[part, 2], "w": w[part], "y": y[part]})
        pq.write_table(table, folder / f"{k}.parquet", row_group_size=64)
    text = f"seed: 1\ndata: {{path: {folder}, weight: w}}\nmodel: {{hidden: [10]}}\n"
    cfg = write(tmp_path, "lazy.yaml", text + "train: {epochs: 3, batch_size: 40, dtype: float64}\n")
    one = mpi(1, "train", str(cfg), "--out", str(tmp_path / "one"), "-q")
    two = mpi(2, "train", str(cfg), "--out", str(tmp_path / "two"), "-q")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    p1, p2 = params(tmp_path / "one"), params(tmp_path / "two")
    assert p1["param.W1"].shape[1] == 3  # the weight column is not a feature
    for k in p1:
        assert np.max(np.abs(p1[k] - p2[k])) <= 1e-12 * np.max(np.abs(p1[k])), k
    for r1, r2 in zip(history(tmp_path / "one"), history(tmp_path / "two")):
        assert float(r2["val_loss"]) == pytest.approx(float(r1["val_loss"]), rel=1e-12, abs=0)


def test_a_weighted_multilabel_table_under_two_ranks_trains_as_one_process_does(tmp_path):
    # The shipped example: label sets, per-row weights; the per-label sums merge over the ranks.
    from helpers import ROOT

    text = (
        f"seed: 0\ndata: {{path: {ROOT / 'datasets' / 'articles.csv'}, target: topics, label_separator: '|',"
        " weight: panel_weight, id: article_id}\nmodel: {hidden: [8]}\n"
        "train: {epochs: 3, optimizer: sgd, batch_size: 19, learning_rate: 0.1, momentum: 0.9, dtype: float64}\n"
    )
    cfg = write(tmp_path, "c.yaml", text)
    one = mpi(1, "train", str(cfg), "--out", str(tmp_path / "one"), "--json")
    two = mpi(2, "train", str(cfg), "--out", str(tmp_path / "two"), "--json")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    p1, p2 = params(tmp_path / "one"), params(tmp_path / "two")
    for k in p1:
        assert np.max(np.abs(p1[k] - p2[k])) <= 1e-12 * np.max(np.abs(p1[k])), k
    for r1, r2 in zip(history(tmp_path / "one"), history(tmp_path / "two")):
        for k in ("val_loss", "val_accuracy", "val_hamming_loss", "val_macro_f1"):
            assert float(r2[k]) == pytest.approx(float(r1[k]), rel=1e-12, abs=0), k
    t1, t2 = json.loads(one.stdout)["test"], json.loads(two.stdout)["test"]
    for a, b in zip(t1["per_label"], t2["per_label"]):
        assert a["label"] == b["label"]
        for k in ("precision", "recall", "f1", "support"):
            assert b[k] == pytest.approx(a[k], rel=1e-12), (a["label"], k)


# ---- batch_norm over the whole batch (as torch.nn.SyncBatchNorm) -----------------------------

# 210 training rows in batches of 26: the last batch has 2 rows, so under 2 ranks each rank
# normalises its one row by the other's, and under 3 one rank holds none of them. No bias
# before a batch_norm (it would subtract it again): a parameter of zero gradient moves by
# its rounding alone, and Adam would scale that up to 1e-10.
# init: he pinned: the trajectories these 1e-12 tolerances were measured on (a tanh layer list
# now starts from Glorot by default, where lbfgs carries the ranks' rounding to 5e-11).
NORM = """\
seed: 4
data: {dataset: moons, n_samples: 300, noise: 0.2}
model:
  layers: [{linear: {width: 8, bias: false}}, batch_norm, tanh, {linear: {width: 6, bias: false}}, batch_norm, tanh]
  init: he
train: {epochs: 3, dtype: float64, TRAIN}
"""


def model_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path / "model.npz") as z:
        return {k: z[k] for k in z.files if k.startswith(("param.", "buffer."))}


def assert_ranks_train_as_one_process(tmp_path: Path, text: str, rtol: float) -> None:
    """1, 2 and 3 ranks on the config ``text``: parameters and running statistics, and every
    epoch's losses, equal to ``rtol`` (relative to each array's largest value, or to 1)."""
    cfg = write(tmp_path, "c.yaml", text)
    runs = {n: mpi(n, "train", str(cfg), "--out", str(tmp_path / f"ranks{n}"), "-q") for n in (1, 2, 3)}
    for n, run in runs.items():
        assert run.returncode == 0 and rank_exits(run.stderr) == [0] * n, run.stderr
    one = model_arrays(tmp_path / "ranks1")
    assert {"buffer.running_mean1", "buffer.running_var2"} <= one.keys()
    assert np.abs(one["buffer.running_var1"] - 1).max() > 1e-3  # the statistics moved
    h1 = history(tmp_path / "ranks1")
    for n in (2, 3):
        got = model_arrays(tmp_path / f"ranks{n}")
        assert got.keys() == one.keys()
        for k in one:
            assert np.max(np.abs(got[k] - one[k])) <= rtol * max(np.max(np.abs(one[k])), 1.0), (n, k)
        for r1, r2 in zip(h1, history(tmp_path / f"ranks{n}")):
            for k in ("train_loss", "val_loss"):
                assert float(r2[k]) == pytest.approx(float(r1[k]), rel=rtol, abs=0), (n, k)


@pytest.mark.parametrize(
    "train",
    [
        "batch_size: 26, learning_rate: 0.1, momentum: 0.9, weight_decay: 0.001",
        "optimizer: adam, batch_size: 26, learning_rate: 0.01",
    ],
)
def test_batch_norm_under_two_and_three_ranks_trains_as_one_process_does(tmp_path, train):
    assert_ranks_train_as_one_process(tmp_path, NORM.replace("TRAIN", train), 1e-12)


def test_batch_norm_with_weighted_rows_under_two_and_three_ranks_trains_as_one_process_does(tmp_path):
    # Each rank's share of the batch's weight scales its gradient sums; a rank whose rows all
    # weigh 0 still passes the gradient through the statistics its rows are part of.
    X, y, w = weighted_rows()
    with (tmp_path / "w.csv").open("w") as f:
        f.write("a,b,c,w,label\n")
        f.writelines(
            f"{float(r[0])!r},{float(r[1])!r},{float(r[2])!r},{float(wi)!r},{yi}\n" for r, wi, yi in zip(X, w, y)
        )
    text = NORM.replace("{dataset: moons, n_samples: 300, noise: 0.2}", "{path: w.csv, target: label, weight: w}")
    assert_ranks_train_as_one_process(tmp_path, text.replace("TRAIN", "batch_size: 26, learning_rate: 0.1"), 1e-12)


@pytest.mark.parametrize(
    "train",
    [
        "optimizer: lbfgs, max_iter: 10",
        "optimizer: newton_cg, batch_size: 70, cg_max_iter: 5",
        "optimizer: newton_cg, curvature: hessian, damping: 3.0, batch_size: 70, cg_max_iter: 5",
    ],
)
def test_batch_norm_under_second_order_methods_and_three_ranks_ends_where_one_process_does(tmp_path, train):
    # Their loss, gradient and curvature products normalise by the statistics of all rows of
    # every rank; the running statistics after each epoch are the whole training data's.
    assert_ranks_train_as_one_process(tmp_path, NORM.replace("epochs: 3", "epochs: 2").replace("TRAIN", train), 1e-12)


def test_hessian_of_a_batch_norm_model_under_two_ranks_is_one_process_s(tmp_path):
    # mlpbp hessian takes evaluation mode: batch_norm is affine there, so no statistics are shared.
    X, y, _ = weighted_rows()
    with (tmp_path / "t.csv").open("w") as f:
        f.write("a,b,c,label\n")
        f.writelines(f"{float(r[0])!r},{float(r[1])!r},{float(r[2])!r},{yi}\n" for r, yi in zip(X, y))
    text = NORM.replace("{dataset: moons, n_samples: 300, noise: 0.2}", "{path: t.csv, target: label}")
    cfg = write(tmp_path, "c.yaml", text.replace("TRAIN", "batch_size: 26"))
    trained = mpi(1, "train", str(cfg), "--out", str(tmp_path / "run"), "-q")
    assert trained.returncode == 0, trained.stderr
    args = ["hessian", str(tmp_path / "run" / "model.npz"), str(tmp_path / "t.csv"), "--top-k", "2"]
    one, two = mpi(1, *args, "--json"), mpi(2, *args, "--json")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    a, b = json.loads(one.stdout), json.loads(two.stdout)
    assert a["rows"] == b["rows"] == 300
    np.testing.assert_allclose(b["top_eigenvalues"], a["top_eigenvalues"], rtol=1e-9)
