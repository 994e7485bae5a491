"""Property-based: random YAML, CSV text and bytes fed to the loaders. Whatever the input,
the loader either returns or raises MlpbpError with a one-line message; nothing else escapes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpbp.data import Standardizer, read_table
from mlpbp.engine.network import MLP
from mlpbp.errors import MlpbpError
from mlpbp.run.checkpoint import TrainState, load_checkpoint, save_checkpoint
from mlpbp.run.config import Config, config_from_dict, load_config
from mlpbp.run.model_file import TrainedModel, load_model
from mlpbp.run.prepare import prepare

SETTINGS = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _only_our_error(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except MlpbpError as e:
        message = str(e)
        assert message and "\n" not in message, repr(message)
        return None


# ---- YAML configs ---------------------------------------------------------------------------

KEYS = [
    "seed",
    "data",
    "model",
    "train",
    "output",
    "dataset",
    "path",
    "target",
    "task",
    "test_fraction",
    "validation_fraction",
    "standardize",
    "n_samples",
    "noise",
    "hidden",
    "activation",
    "loss",
    "init",
    "epochs",
    "batch_size",
    "learning_rate",
    "momentum",
    "nesterov",
    "weight_decay",
    "schedule",
    "step_size",
    "gamma",
    "decay",
    "patience",
    "dtype",
    "dir",
]
WORDS = [
    "moons",
    "xor",
    "sine",
    "digits",
    "relu",
    "tanh",
    "float32",
    "cosine",
    "classification",
    "regression",
    "cross_entropy",
    "he",
    "x.csv",
    "data.npz",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True)
    | st.sampled_from(WORDS)
    | st.text(max_size=12)
)
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6) | st.integers(), inner, max_size=5)
    ),
    max_leaves=20,
)
overrides = st.lists(
    st.builds(
        lambda k, v: f"{k}={v}",
        st.sampled_from(["train.epochs", "model.hidden", "seed", "data", "data.dataset", "x.y.z", "", "train..lr"]),
        st.text(max_size=10),
    )
    | st.text(max_size=15),
    max_size=3,
)


def _load(work: Path, text: str, sets=()) -> None:
    path = work / "fuzz.yaml"
    path.write_bytes(text.encode("utf-8", errors="replace"))
    cfg = _only_our_error(load_config, path, sets)
    assert cfg is None or isinstance(cfg, Config)


@SETTINGS
@given(doc=documents, sets=overrides)
def test_random_yaml_documents(work, doc, sets):
    _load(work, yaml.safe_dump(doc, allow_unicode=True), sets)


@SETTINGS
@given(
    doc=st.fixed_dictionaries(
        {},
        optional={
            "seed": scalars,
            "data": st.dictionaries(st.sampled_from(KEYS), scalars, max_size=5) | st.just({"dataset": "moons"}),
            "model": documents,
            "train": st.dictionaries(st.sampled_from(KEYS), scalars),
        },
    ),
    sets=overrides,
)
def test_config_shaped_documents(work, doc, sets):
    _load(work, yaml.safe_dump(doc, allow_unicode=True), sets)


@SETTINGS
@given(
    text=st.text(
        alphabet=st.sampled_from(list("abdseta:{}[]-,'\"\n\t &*!|>%@`#?.0123456789")) | st.characters(), max_size=80
    )
)
def test_random_yaml_text(work, text):
    _load(work, text)


@SETTINGS
@given(data=st.binary(max_size=80))
def test_random_config_bytes(work, data):
    path = work / "fuzz.yaml"
    path.write_bytes(data)
    _only_our_error(load_config, path)


# ---- CSV ------------------------------------------------------------------------------------

CELLS = [
    "1",
    "0",
    "-2.5",
    "1e3",
    "nan",
    "inf",
    "-inf",
    "1e999",
    "",
    " ",
    "a",
    "b",
    "x0",
    "y",
    '"1,2"',
    '"',
    "\x00",
    "0x10",
    "1_000",
    "٣",
    "３",
]
csv_text = st.one_of(
    st.lists(st.lists(st.sampled_from(CELLS), min_size=0, max_size=4).map(",".join), max_size=8).map(
        lambda rows: "\n".join(rows)
    ),
    st.lists(st.lists(st.sampled_from(CELLS), min_size=0, max_size=4).map(",".join), max_size=8).map(
        lambda rows: "x0,x1,y\n" + "\r\n".join(rows)
    ),
    st.text(alphabet=st.sampled_from(list('xy01,.\n\r"e-nai ')), max_size=60),
    st.text(max_size=40),
)


def _csv(work: Path, text: str) -> Path:
    path = work / "fuzz.csv"
    path.write_bytes(text.encode("utf-8", errors="replace"))
    return path


def _prepare(path: Path, target=None, task=None, missing="error"):
    """A data file through everything training does before the first step."""
    data = {"path": str(path), "test_fraction": 0, "validation_fraction": 0, "missing": missing}
    data.update({k: v for k, v in (("target", target), ("task", task)) if v is not None})
    return prepare(config_from_dict({"data": data}), dtype="float64")


@SETTINGS
@given(
    text=csv_text,
    target=st.sampled_from([None, "y", "x0", "missing"]),
    task=st.sampled_from([None, "classification", "regression"]),
    missing=st.sampled_from(["error", "impute"]),
)
def test_read_csv_random_text(work, text, target, task, missing):
    p = _only_our_error(_prepare, _csv(work, text), target, task, missing)
    if p is not None:  # what it accepts is well formed
        X, y = p.train
        assert X.ndim == 2 and X.shape[0] == len(y) and np.all(np.isfinite(X))
        if p.task == "classification":
            assert len(p.classes) >= 2


def _predict_rows(path: Path, model: TrainedModel):
    raw = read_table(path)
    return model.predict_outputs(raw.table, raw.first_row, str(path))


@SETTINGS
@given(text=csv_text)
def test_predict_random_text(work, text):
    model = TrainedModel(_net(), Standardizer(np.zeros(2), np.ones(2)), None, ["a", "b"], ["x0", "x1"], "y")
    o = _only_our_error(_predict_rows, _csv(work, text), model)
    if o is not None:
        assert o.shape[1] == 2 and np.all(np.isfinite(o))


@SETTINGS
@given(data=st.binary(max_size=200))
def test_read_csv_random_bytes(work, data):
    path = work / "fuzz.csv"
    path.write_bytes(data)
    _only_our_error(_prepare, path)


# ---- NPZ, model and checkpoint files -----------------------------------------------------------


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npz_compressed_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


GOOD_DATA = _npz_bytes(X=np.arange(12.0).reshape(6, 2), y=np.array([0, 1, 0, 1, 0, 1]))
GOOD_DATA_Z = _npz_compressed_bytes(X=np.arange(12.0).reshape(6, 2), y=np.array([0, 1, 0, 1, 0, 1]))


def _model_bytes() -> bytes:
    net = MLP([2, 3, 2], "tanh", "cross_entropy", dtype="float32", task="classification")
    model = TrainedModel(net, Standardizer(np.zeros(2), np.ones(2)), None, ["a", "b"], ["x0", "x1"], "y")
    return _npz_bytes(**_arrays_of(model))


def _arrays_of(model: TrainedModel) -> dict:
    # what TrainedModel.save writes, without touching the disk
    meta = {
        "format_version": 1,
        "widths": model.net.widths,
        "activation": model.net.activation,
        "loss": model.net.loss_name,
        "task": model.task,
        "dtype": str(model.net.dtype),
        "classes": model.classes,
        "feature_names": model.feature_names,
        "target_name": "y",
        "config": {},
    }
    arrays = {f"param.{k}": v for k, v in model.net.params.items()}
    arrays.update(meta=np.array(json.dumps(meta)), x_mean=model.x_scaler.mean, x_scale=model.x_scaler.scale)
    return arrays


GOOD_MODEL = _model_bytes()


def _net():
    return MLP([2, 3, 2], "tanh", "cross_entropy", dtype="float32", task="classification")


def _checkpoint_bytes(work: Path) -> bytes:
    net = _net()
    path = work / "ck_good.npz"
    save_checkpoint(
        path,
        TrainState(rng_state=np.random.PCG64(0).state, history=[]),
        net.params,
        {f"velocity.{k}": np.zeros_like(p) for k, p in net.params.items()},
        None,
    )
    return path.read_bytes()


def mutated(good: bytes):
    """Valid archive bytes, then damaged: truncated, bytes overwritten, or a slice removed."""
    n = len(good)
    return st.one_of(
        st.integers(0, n - 1).map(lambda k: good[:k]),
        st.tuples(st.integers(0, n - 1), st.binary(min_size=1, max_size=8)).map(
            lambda t: good[: t[0]] + t[1] + good[t[0] + len(t[1]) :]
        ),
        st.tuples(st.integers(0, n - 1), st.integers(1, 64)).map(lambda t: good[: t[0]] + good[t[0] + t[1] :]),
    )


def _write(work: Path, name: str, data: bytes) -> Path:
    path = work / name
    path.write_bytes(data)
    return path


@SETTINGS
@given(
    data=st.binary(max_size=300)
    | st.binary(max_size=300).map(lambda b: b"PK\x03\x04" + b)
    | st.binary(max_size=200).map(lambda b: b"\x93NUMPY" + b)
)
def test_read_npz_random_bytes(work, data):
    _only_our_error(_prepare, _write(work, "fuzz.npz", data))


@SETTINGS
@given(data=mutated(GOOD_DATA) | mutated(GOOD_DATA_Z), task=st.sampled_from([None, "classification", "regression"]))
def test_read_npz_damaged_archive(work, data, task):
    _only_our_error(_prepare, _write(work, "fuzz.npz", data), None, task)


@SETTINGS
@given(data=st.binary(max_size=300) | mutated(GOOD_MODEL))
def test_load_model_random_and_damaged(work, data):
    _only_our_error(load_model, _write(work, "fuzz_model.npz", data))


@SETTINGS
@given(data=st.data())
def test_load_checkpoint_random_and_damaged(work, data):
    good = _checkpoint_bytes(work)
    blob = data.draw(st.binary(max_size=300) | mutated(good))
    net = _net()
    velocity = {f"velocity.{k}": np.zeros_like(p) for k, p in net.params.items()}
    _only_our_error(load_checkpoint, _write(work, "fuzz_ck.npz", blob), net.params, velocity)


def test_undamaged_archives_load(work):
    # the fuzzing above starts from files the loaders accept
    assert _prepare(_write(work, "ok.npz", GOOD_DATA)).train[0].shape == (6, 2)
    assert load_model(_write(work, "ok_model.npz", GOOD_MODEL)).classes == ["a", "b"]
    net = _net()
    state, _ = load_checkpoint(
        _write(work, "ok_ck.npz", _checkpoint_bytes(work)),
        net.params,
        {f"velocity.{k}": np.zeros_like(p) for k, p in net.params.items()},
    )
    assert state.epoch == 0
