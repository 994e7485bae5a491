"""Reading ahead in a second process (mlpbp.data.readahead): the batches it hands over are the
very numbers read in-process, in training and in the metrics, through epochs of different
batch shapes, a stop mid-epoch, a killed reader and a file cut short."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from helpers import one_line_error
from mlpbp import MLP, SGD
from mlpbp.data import lazy
from mlpbp.data.preprocessing import Standardizer
from mlpbp.data.readahead import ReadAhead, read_rows, standardised
from mlpbp.run.metrics import compute_metrics
from mlpbp.run.trainer import sgd_epoch


def _table(tmp_path, n: int = 3000, d: int = 9, dtype=np.float32):
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(n, d)) * rng.uniform(0.5, 4, d) + rng.uniform(-2, 2, d)).astype(dtype)
    y = np.argmax(X @ rng.normal(size=(d, 3)), axis=1)
    folder = tmp_path / "npy"
    folder.mkdir()
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", y)
    return lazy.NpySource(folder / "X.npy"), X, y


def _scaled(source, X, dtype):
    scaler = Standardizer().fit(X.astype(np.float64))
    return lazy.LazyRows(source).transformed(scaler, dtype), scaler


@pytest.mark.parametrize("out_dtype", [np.float32, np.float64])
def test_batches_read_ahead_are_the_rows_read_here(tmp_path, out_dtype):
    source, X, _ = _table(tmp_path)
    rng = np.random.default_rng(1)
    scaler = Standardizer().fit(X.astype(np.float64))
    for mean, scale in ((scaler.mean, scaler.scale), (None, None)):
        reader = ReadAhead(source._fd, source.offset, source.d, source.dtype, out_dtype, mean, scale)
        epochs = [
            [rng.permutation(3000)[i : i + 64] for i in range(0, 3000, 64)],  # shuffled
            [np.arange(i, min(i + 1000, 3000)) for i in range(0, 3000, 1000)],  # sorted chunks, larger
            [rng.integers(0, 3000, 7) for _ in range(30)],  # small again, with repeats
            [rng.choice(3000, 4, replace=False) for _ in range(30)],  # spread thinly: one read per row
        ]
        for steps in epochs:
            reader.plan(np.concatenate(steps), np.cumsum([0] + [len(step) for step in steps]))
            for step in steps:
                got = reader.next_batch()
                want = standardised(read_rows(source._fd, source.offset, source.d, source.dtype, step), mean, scale)
                assert got.dtype == out_dtype and got.tobytes() == want.astype(out_dtype).tobytes()
            assert reader.done
        proc = reader._proc
        reader.close()
        assert proc.poll() is not None  # the child is gone once the pipe closes


def _train(X, y, order_rng, epochs: int, ahead: bool, stop_at=None):
    net = MLP([X.shape[1], 12, 3], "relu", "cross_entropy", seed=0, dtype="float32")
    opt = SGD(net.params, 0.05, momentum=0.5)
    for e in range(epochs):
        order = order_rng.permutation(X.shape[0])
        after = (lambda s: s + 1 == stop_at) if e == 0 and stop_at else None
        done, _ = sgd_epoch(net, opt, X, y, order, 50, after_step=after, read_ahead=ahead)
        if after is not None:  # resume the stopped epoch where it stopped
            sgd_epoch(net, opt, X, y, order, 50, first_step=done, read_ahead=ahead)
    return net.params


@pytest.mark.parametrize("stop_at", [None, 7])
def test_training_with_read_ahead_is_bit_identical(tmp_path, capfd, stop_at):
    source, X, y = _table(tmp_path)
    rows, _ = _scaled(source, X, np.float32)
    here = _train(rows, y, np.random.default_rng(3), 3, ahead=False)
    ahead = _train(rows, y, np.random.default_rng(3), 3, ahead=True, stop_at=stop_at)
    assert rows.__dict__.get("_reader") is not None  # the batches did come from the reader
    assert all(here[k].tobytes() == ahead[k].tobytes() for k in here)
    assert capfd.readouterr().err == ""  # a reader ended mid-epoch says nothing
    view = rows[np.arange(100, 2900)]  # a view (the training split): rows mapped through its index
    here = _train(view, y[100:2900], np.random.default_rng(4), 2, ahead=False)
    ahead = _train(view, y[100:2900], np.random.default_rng(4), 2, ahead=True)
    assert all(here[k].tobytes() == ahead[k].tobytes() for k in here)


def test_a_killed_reader_leaves_the_rest_of_the_epoch_to_be_read_here(tmp_path):
    source, X, y = _table(tmp_path)
    rows, _ = _scaled(source, X, np.float32)
    here = _train(rows, y, np.random.default_rng(5), 1, ahead=False)

    net = MLP([X.shape[1], 12, 3], "relu", "cross_entropy", seed=0, dtype="float32")
    opt = SGD(net.params, 0.05, momentum=0.5)
    order = np.random.default_rng(5).permutation(X.shape[0])

    def after(s):
        if s == 4:
            os.kill(rows._reader._proc.pid, signal.SIGKILL)
        return False

    sgd_epoch(net, opt, rows, y, order, 50, after_step=after, read_ahead=True)
    assert all(here[k].tobytes() == net.params[k].tobytes() for k in here)
    assert rows.__dict__.get("_reader") is None  # dropped; the next epoch starts a new one
    # killed between two epochs: the next epoch is read here, with the same numbers
    net2 = MLP([X.shape[1], 12, 3], "relu", "cross_entropy", seed=0, dtype="float32")
    opt2 = SGD(net2.params, 0.05, momentum=0.5)
    sgd_epoch(net2, opt2, rows, y, order, 50, read_ahead=True)
    reader = rows._reader
    os.kill(reader._proc.pid, signal.SIGKILL)
    reader._proc.wait()
    for net_, opt_, ahead in ((net, opt, False), (net2, opt2, True)):
        sgd_epoch(net_, opt_, rows, y, order[::-1].copy(), 50, read_ahead=ahead)
    assert all(net2.params[k].tobytes() == net.params[k].tobytes() for k in here)


def test_metrics_read_ahead_are_the_metrics_read_here(tmp_path):
    source, X, y = _table(tmp_path, n=20000)
    rows, _ = _scaled(source, X, np.float64)
    view = rows[np.random.default_rng(6).permutation(20000)[:17000]]
    net = MLP([X.shape[1], 8, 3], "tanh", "cross_entropy", seed=1)
    here = compute_metrics(net, view, y[view.index])
    assert compute_metrics(net, view, y[view.index], read_ahead=True) == here


def test_a_file_cut_short_while_reading_ahead_is_one_line(tmp_path):
    source, X, y = _table(tmp_path)
    rows, _ = _scaled(source, X, np.float32)
    with open(source.path, "r+b") as f:
        f.truncate(source.offset + 100 * source.row_bytes)
    net = MLP([X.shape[1], 12, 3], "relu", "cross_entropy", seed=0, dtype="float32")
    order = np.random.default_rng(0).permutation(X.shape[0])
    msg = one_line_error(sgd_epoch, net, SGD(net.params, 0.05), rows, y, order, 50, read_ahead=True)
    assert str(source.path) in msg and "the file ended early (truncated?)" in msg


def test_without_memfd_rows_are_read_here(tmp_path, monkeypatch):
    from mlpbp.data import readahead

    monkeypatch.setattr(readahead, "AVAILABLE", False)  # as on macOS: no os.memfd_create
    source, X, y = _table(tmp_path)
    rows, _ = _scaled(source, X, np.float32)
    here = _train(rows, y, np.random.default_rng(7), 1, ahead=False)
    ahead = _train(rows, y, np.random.default_rng(7), 1, ahead=True)
    assert "_reader" not in rows.__dict__
    assert all(here[k].tobytes() == ahead[k].tobytes() for k in here)


def test_rows_taken_out_of_the_planned_order_are_refused(tmp_path):
    source, X, _ = _table(tmp_path)
    rows, _ = _scaled(source, X, np.float32)
    with rows.read_ahead(np.arange(40), np.array([0, 20, 40])) as ahead:
        with pytest.raises(ValueError, match="out of the planned order"):
            ahead.take(np.arange(20, 40))
    assert rows.__dict__.get("_reader") is None  # a plan left unfinished ends its reader
    with rows.read_ahead(np.arange(40), np.arange(0, 41, 4)) as ahead:  # narrow batches: read here
        assert ahead is rows and rows.__dict__.get("_reader") is None


@pytest.mark.parametrize("size,rank", [(1, 0), (3, 0), (3, 2), (4, 1)])
@pytest.mark.parametrize("batch,first", [(1, 0), (5, 2), (7, 0), (2, 3)])  # 2 < 3 or 4 ranks: empty shares
def test_the_planned_shares_are_the_rows_each_step_takes(size, rank, batch, first):
    from mlpbp.run.distributed import Comm
    from mlpbp.run.epoch import Batches

    comm = Comm()
    comm.rank, comm.size = rank, size
    order = np.random.default_rng(8).permutation(23)
    rows, bounds = Batches(order, batch, first).shares(comm.share)
    expected = []
    for s in range(first, -(-23 // batch)):  # as _steps slices them
        step = order[s * batch : (s + 1) * batch]
        lo, hi = comm.share(step.shape[0])
        expected.append(step[lo:hi])
    assert len(bounds) == len(expected) + 1
    for i, step in enumerate(expected):
        np.testing.assert_array_equal(rows[bounds[i] : bounds[i + 1]], step)
