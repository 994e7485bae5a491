"""BLAS threads: chosen per shape and machine, explicit settings win, both BLAS pools follow,
and a run is deterministic for a given seed and thread count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from helpers import TINY_CONFIG, one_line_error
from mlpbp.cli import app
from mlpbp.run import threads as th
from mlpbp.run.config import config_from_dict, load_config
from mlpbp.run.prepare import prepare
from mlpbp.run.trainer import Trainer

BIG = (784, 256, 128, 10)  # 0.93 MFLOP per row


@pytest.fixture
def no_env(monkeypatch):
    for name in th.ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cores(monkeypatch):
    """Pretend this process may run on n CPUs of a machine of n, ``busy`` of them running
    other processes' threads."""

    def set_cores(n, busy=0):
        monkeypatch.setattr(th.os, "sched_getaffinity", lambda pid: set(range(n)))
        monkeypatch.setattr(th.os, "cpu_count", lambda: n)
        monkeypatch.setattr(th, "other_runnable", lambda: busy)

    return set_cores


def _timer(seconds_by_threads):
    calls = []

    def measure(n):
        calls.append(n)
        return seconds_by_threads[n]

    return measure, calls


def test_explicit_count_wins_over_environment_and_calibration(monkeypatch, cores):
    cores(2)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    measure, calls = _timer({1: 1.0, 2: 0.1})
    assert th.choose_threads(3, BIG, 512, measure=measure).threads == 3
    assert calls == []


@pytest.mark.parametrize("name", th.ENV_VARS)
def test_environment_wins_over_auto(monkeypatch, no_env, cores, name):
    cores(4)
    monkeypatch.setenv(name, "2")
    measure, calls = _timer({1: 1.0, 2: 0.1, 3: 0.1, 4: 0.1})
    choice = th.choose_threads("auto", BIG, 512, measure=measure)
    assert choice.threads is None and name in choice.reason and calls == []


def test_small_steps_use_one_thread_without_measuring(no_env, cores):
    cores(8)
    measure, calls = _timer({})
    for batch in (1, 8):  # 0.93 and 7.4 MFLOP
        assert th.choose_threads("auto", BIG, batch, measure=measure).threads == 1
    assert calls == []


def test_calibration_takes_more_threads_only_when_clearly_faster(no_env, cores):
    cores(2)
    measure, calls = _timer({1: 1.0, 2: 0.6})
    assert th.choose_threads("auto", BIG, 512, measure=measure).threads == 2
    assert sorted(set(calls)) == [1, 2]
    measure, _ = _timer({1: 1.0, 2: 1.0 / (th.MIN_GAIN - 0.05)})  # faster, but not by enough
    assert th.choose_threads("auto", BIG, 512, measure=measure).threads == 1
    measure, _ = _timer({1: 1.0, 2: 8.0})  # a busy machine: two threads collapse
    assert th.choose_threads("auto", BIG, 512, measure=measure).threads == 1


def test_cores_other_processes_are_busy_on_are_left_to_them(no_env, cores):
    cores(2, busy=1)  # calibration might catch the neighbour between time slices: not asked
    measure, calls = _timer({1: 1.0, 2: 0.5})
    choice = th.choose_threads("auto", BIG, 512, measure=measure)
    assert choice.threads == 1 and calls == [] and "1 other task running" in choice.reason
    cores(8, busy=3)
    measure, calls = _timer({n: 1.0 / n for n in range(1, 9)})
    assert th.choose_threads("auto", BIG, 4096, measure=measure).threads == 5 and max(calls) == 5


def test_other_runnable_sees_a_busy_process():
    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        assert th.other_runnable() >= 1
    finally:
        busy.kill()
        busy.wait()


@pytest.mark.parametrize("n_cores,ranks,most", [(8, 1, 8), (8, 4, 2), (8, 3, 2), (2, 4, 1), (16, 2, 8)])
def test_auto_never_exceeds_the_cores_divided_by_the_ranks_on_the_node(no_env, cores, n_cores, ranks, most):
    cores(n_cores)
    assert th.usable_cores(ranks) == most
    measure, calls = _timer({n: 1.0 / n for n in range(1, 17)})  # perfect scaling: take them all
    assert th.choose_threads("auto", BIG, 4096, ranks, measure=measure).threads == most
    assert max(calls, default=1) == most


def test_the_limit_reaches_every_blas_pool_in_the_process():
    from scipy.linalg import blas  # noqa: F401  (loads SciPy's own OpenBLAS next to NumPy's)

    with threadpool_limits(limits=2, user_api="blas"):
        with th.blas_thread_limit(1):
            pools = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
            assert pools and all(lib["num_threads"] == 1 for lib in pools)
            assert th.blas_threads() == 1
        with th.blas_thread_limit(None):  # None: leave the pools as they are
            assert th.blas_threads() == 2


@pytest.mark.parametrize("value", [0, -1, "fast", 2.5, True])
def test_bad_threads_values_are_one_line_errors(tmp_path, value):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY_CONFIG)
    message = one_line_error(load_config, cfg, [f"train.threads={json.dumps(value)}"])
    assert "train.threads" in message and "'auto'" in message


def _trainer(tmp_path, threads, name="out", **train):
    raw = {"seed": 3, "data": {"dataset": "moons", "n_samples": 200}, "model": {"hidden": [16]}}
    raw["train"] = {"epochs": 3, "batch_size": 8, "momentum": 0.5, "threads": threads, **train}
    cfg = config_from_dict(raw)
    return Trainer(cfg, prepare(cfg), tmp_path / name)


@pytest.mark.parametrize("threads", [1, 2])
def test_same_seed_and_thread_count_give_identical_weights(tmp_path, threads):
    runs = [_trainer(tmp_path, threads, f"run{i}").run() for i in range(2)]
    assert runs[0].threads == runs[1].threads == threads
    for k, p in runs[0].model.net.params.items():
        np.testing.assert_array_equal(p, runs[1].model.net.params[k])


def test_a_run_records_its_count_and_a_resumed_auto_run_keeps_it(tmp_path, no_env):
    first = _trainer(tmp_path, 2)
    first.run()
    assert first.state.threads == 2
    again = _trainer(tmp_path, "auto")  # the threads key may change between run and resume
    again.state.threads = None
    again.run(resume=True)
    assert again.threads.threads == 2 and "checkpoint" in again.threads.reason
    assert again.state.threads == 2


def test_cli_threads_flag(tmp_path, runner):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY_CONFIG)
    result = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "o"), "--threads", "1", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["threads"] == 1
    result = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "o2"), "--threads", "many"])
    assert result.exit_code == 2
    assert "train.threads" in result.stderr and not (tmp_path / "o2").exists()
