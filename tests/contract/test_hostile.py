"""Hostile inputs: bad configs, CSVs, model files and checkpoints.

Every case runs one command against an output directory that already holds a good run
(model.npz, history.csv, config.yaml, checkpoint.npz, predictions.csv) and checks: the exit
code, exactly one non-empty stderr line naming the problem, no traceback, and every
existing output file byte-identical afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from helpers import PYTHON, ROOT, TINY_CONFIG, subprocess_env
from mlpbp.cli import app

GOOD_CSV = "x0,x1,y\n" + "".join(
    f"{np.cos(t):.4f},{np.sin(t) * (1 if k else -1):.4f},{k}\n" for k in (0, 1) for t in np.linspace(0.1, 3.0, 15)
)


@dataclass
class Ctx:
    tmp: Path  # scratch for the case's input files
    out: Path  # output dir holding a good run; must be left untouched
    cfg: Path  # the good tiny config
    data: Path  # a good labelled CSV (x0, x1, y)
    reg_model: Path  # a good regression model (feature x, target y)

    @property
    def model(self) -> Path:
        return self.out / "model.npz"

    def write(self, name: str, text: str | bytes) -> Path:
        p = self.tmp / name
        p.write_bytes(text) if isinstance(text, bytes) else p.write_text(text)
        return p

    # argv builders
    def train(self, *extra: str, cfg: Path | None = None) -> list[str]:
        # --overwrite: the folder holds a good run, which a failed new run must leave as it was
        replace = () if "--resume" in extra else ("--overwrite",)
        return ["train", str(cfg or self.cfg), "--out", str(self.out), "-q", *replace, *extra]

    def train_text(self, text: str, *extra: str) -> list[str]:
        return self.train(*extra, cfg=self.write("c.yaml", text))

    def train_csv(self, csv_text: str | bytes, data_extra: str = "") -> list[str]:
        self.write("bad.csv", csv_text)
        return self.train_text(f"data: {{path: bad.csv{data_extra}}}\nmodel: {{hidden: [3]}}\ntrain: {{epochs: 1}}\n")

    def predict(self, csv_text: str | bytes, model: Path | None = None) -> list[str]:
        data = self.write("in.csv", csv_text)
        return ["predict", str(model or self.model), str(data), "--out", str(self.out / "predictions.csv")]

    def evaluate(self, csv_text: str | bytes, model: Path | None = None) -> list[str]:
        return ["evaluate", str(model or self.model), str(self.write("in.csv", csv_text))]

    def with_model(self, mutate: Callable[[dict], None]) -> list[str]:
        """predict with a copy of the good model whose arrays `mutate` has changed."""
        with np.load(self.model) as z:
            arrays = {k: z[k] for k in z.files}
        mutate(arrays)
        path = self.tmp / "bad_model.npz"
        np.savez(path, **arrays)
        return ["predict", str(path), str(self.data)]

    def with_meta(self, **changes) -> list[str]:
        def mutate(arrays):
            meta = json.loads(str(arrays["meta"]))
            meta.update(changes)
            arrays["meta"] = np.array(json.dumps(meta))

        return self.with_model(mutate)

    def with_checkpoint(self, data: bytes | Callable[[dict], None], *extra: str) -> list[str]:
        """train --resume after replacing the out dir's checkpoint (bytes, or mutated arrays)."""
        ck = self.out / "checkpoint.npz"
        if isinstance(data, bytes):
            ck.write_bytes(data)
        else:
            with np.load(ck) as z:
                arrays = {k: z[k] for k in z.files}
            data(arrays)
            with ck.open("wb") as f:
                np.savez(f, **arrays)
        return self.train("--resume", *extra)


def _state(**changes):
    def mutate(arrays):
        st = json.loads(str(arrays["state"]))
        st.update(changes)
        arrays["state"] = np.array(json.dumps(st))

    return mutate


def _npy_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    return buf.getvalue()


def _foreign_npz(path: Path) -> bytes:
    np.savez(path, a=np.arange(3))
    return path.read_bytes()


def _pickled_npz(path: Path) -> bytes:
    np.savez(path, meta=np.array([{"format_version": 1}], dtype=object))
    return path.read_bytes()


M = "data: {dataset: moons, n_samples: 60}\n"  # a good data section for config cases


# (id, argv builder, exit code, substrings the one stderr line must contain)
CASES: list[tuple[str, Callable[[Ctx], list[str]], int, tuple[str, ...]]] = [
    # ---- config: file, YAML, top level ---------------------------------------------------------
    ("cfg-missing-file", lambda c: c.train(cfg=c.tmp / "nope.yaml"), 2, ("config file not found", "nope.yaml")),
    ("cfg-is-directory", lambda c: c.train(cfg=c.tmp), 2, ("cannot read config file",)),
    ("cfg-not-utf8", lambda c: c.train(cfg=c.write("c.yaml", b"seed: \xff\xfe\n")), 2, ("cannot read config file",)),
    ("cfg-empty-file", lambda c: c.train_text(""), 2, ("data", "Field required")),
    (
        "cfg-yaml-syntax",
        lambda c: c.train_text(M + "model:\n  hidden: [4\ntrain: {}\n"),
        2,
        ("YAML syntax error", "line", "column"),
    ),
    ("cfg-yaml-tab-indent", lambda c: c.train_text(M + "model:\n\thidden: [4]\n"), 2, ("YAML syntax error", "line 3")),
    ("cfg-top-level-list", lambda c: c.train_text("- seed\n- data\n"), 2, ("top level must be a mapping", "list")),
    ("cfg-top-level-scalar", lambda c: c.train_text("42\n"), 2, ("top level must be a mapping", "int")),
    ("cfg-python-tag", lambda c: c.train_text("seed: !!python/object:os.system ls\n"), 2, ("YAML syntax error",)),
    # ---- config: keys ----------------------------------------------------------------------------
    ("cfg-unknown-top-key", lambda c: c.train_text(M + "sede: 1\n"), 2, ("sede", "did you mean 'seed'")),
    (
        "cfg-unknown-nested-key",
        lambda c: c.train_text(M + "train: {learning_rat: 0.1}\n"),
        2,
        ("train.learning_rat", "did you mean 'learning_rate'"),
    ),
    (
        "cfg-unknown-data-key",
        lambda c: c.train_text("data: {dataset: moons, n_sample: 60}\n"),
        2,
        ("data.n_sample", "did you mean 'n_samples'"),
    ),
    ("cfg-missing-data", lambda c: c.train_text("seed: 1\n"), 2, ("data", "Field required")),
    ("cfg-section-not-mapping", lambda c: c.train_text(M + "train: 5\n"), 2, ("train", "(got 5)")),
    # ---- config: types and values ------------------------------------------------------------------
    ("cfg-epochs-string", lambda c: c.train_text(M + "train: {epochs: ten}\n"), 2, ("train.epochs", "'ten'")),
    ("cfg-epochs-float", lambda c: c.train_text(M + "train: {epochs: 2.5}\n"), 2, ("train.epochs", "2.5")),
    (
        "cfg-epochs-zero",
        lambda c: c.train_text(M + "train: {epochs: 0}\n"),
        2,
        ("train.epochs", "greater than or equal to 1", "0"),
    ),
    (
        "cfg-lr-bool",
        lambda c: c.train_text(M + "train: {learning_rate: true}\n"),
        2,
        ("train.learning_rate", "boolean"),
    ),
    (
        "cfg-lr-negative",
        lambda c: c.train_text(M + "train: {learning_rate: -0.1}\n"),
        2,
        ("train.learning_rate", "-0.1"),
    ),
    ("cfg-lr-nan", lambda c: c.train_text(M + "train: {learning_rate: .nan}\n"), 2, ("train.learning_rate", "finite")),
    ("cfg-momentum-one", lambda c: c.train_text(M + "train: {momentum: 1.0}\n"), 2, ("train.momentum", "1.0")),
    (
        "cfg-bad-activation",
        lambda c: c.train_text(M + "model: {activation: relux}\n"),
        2,
        ("model.activation", "'relux'", "'relu'"),
    ),
    (
        "cfg-markup-looking-value",
        lambda c: c.train_text(M + "model: {activation: '[red]x'}\n"),
        2,
        ("model.activation", "'[red]x'"),
    ),
    ("cfg-hidden-zero", lambda c: c.train_text(M + "model: {hidden: [4, 0]}\n"), 2, ("model.hidden.1", "0")),
    ("cfg-hidden-not-list", lambda c: c.train_text(M + "model: {hidden: four}\n"), 2, ("model.hidden", "'four'")),
    ("cfg-unknown-dataset", lambda c: c.train_text("data: {dataset: mnist}\n"), 2, ("data.dataset", "'mnist'")),
    (
        "cfg-dataset-and-path",
        lambda c: c.train_text("data: {dataset: moons, path: x.csv}\n"),
        2,
        ("data", "exactly one of 'dataset'", "'path'"),
    ),
    (
        "cfg-test-fraction",
        lambda c: c.train_text("data: {dataset: moons, test_fraction: 1.5}\n"),
        2,
        ("data.test_fraction", "1.5"),
    ),
    (
        "cfg-fractions-sum",
        lambda c: c.train_text("data: {dataset: moons, test_fraction: 0.6, validation_fraction: 0.5}\n"),
        2,
        ("data", "test_fraction + validation_fraction"),
    ),
    (
        "cfg-nesterov-no-momentum",
        lambda c: c.train_text(M + "train: {nesterov: true}\n"),
        2,
        ("train", "nesterov", "momentum"),
    ),
    ("cfg-seed-string", lambda c: c.train_text(M + "seed: abc\n"), 2, ("seed", "'abc'")),
    (
        "cfg-bad-dtype",
        lambda c: c.train_text(M + "train: {dtype: float16}\n"),
        2,
        ("train.dtype", "'float16'", "float32"),
    ),
    (
        "cfg-patience-no-validation",
        lambda c: c.train_text("data: {dataset: moons, n_samples: 60, validation_fraction: 0}\ntrain: {patience: 3}\n"),
        2,
        ("train.patience", "validation_fraction"),
    ),
    (
        "cfg-cross-entropy-regression",
        lambda c: c.train_text("data: {dataset: sine, n_samples: 40}\nmodel: {loss: cross_entropy}\n"),
        2,
        ("model.loss", "cross_entropy"),
    ),
    (
        "cfg-task-mismatch",
        lambda c: c.train_text("data: {dataset: moons, task: regression}\n"),
        2,
        ("data.task", "moons", "classification"),
    ),
    # ---- config: --set overrides --------------------------------------------------------------------
    (
        "set-unknown-key",
        lambda c: c.train("--set", "train.learning_rat=0.1"),
        2,
        ("train.learning_rat", "did you mean 'learning_rate'"),
    ),
    ("set-bad-value", lambda c: c.train("--set", "train.epochs=abc"), 2, ("train.epochs", "'abc'")),
    ("set-bad-enum", lambda c: c.train("--set", "train.schedule=linear"), 2, ("train.schedule", "'linear'", "cosine")),
    ("set-no-equals", lambda c: c.train("--set", "train.epochs"), 2, ("bad --set", "train.epochs", "KEY=VALUE")),
    ("set-empty-key-part", lambda c: c.train("--set", "train..epochs=3"), 2, ("bad --set", "train..epochs")),
    ("set-into-scalar", lambda c: c.train("--set", "seed.x=1"), 2, ("bad --set", "seed is a value")),
    (
        "set-invalid-yaml",
        lambda c: c.train("--set", "model.hidden=[4"),
        2,
        ("bad --set", "model.hidden", "not valid YAML"),
    ),
    # ---- CSV data for training -----------------------------------------------------------------------
    ("csv-missing", lambda c: c.train_text("data: {path: nope.csv}\n"), 2, ("data file not found", "nope.csv")),
    # a folder is a table read lazily (an .npy pair or Parquet files); this one holds neither
    ("data-folder-of-neither", lambda c: c.train_text("data: {path: .}\n"), 2, ("must hold X.npy and y.npy",)),
    (  # a damaged .npy is named as an array, not as an .npz archive
        "npy-truncated",
        lambda c: (
            c.write("y.npy", _npy_bytes()),
            c.train_text(f"data: {{path: {c.write('X.npy', _npy_bytes()[:-7])}}}\n"),
        )[1],
        2,
        ("X.npy: cannot read as a .npy array",),
    ),
    ("csv-empty", lambda c: c.train_csv(""), 2, ("bad.csv", "file is empty")),
    ("csv-header-only", lambda c: c.train_csv("x0,x1,y\n"), 2, ("bad.csv", "no data rows")),
    (
        "csv-ragged",
        lambda c: c.train_csv("x0,x1,y\n1,2,0\n3,4\n5,6,1\n"),
        2,
        ("bad.csv", "row 3", "2 fields", "header has 3"),
    ),
    (
        "csv-non-numeric",
        lambda c: c.train_csv("x0,x1,y\n1,2,0\n3,abc,1\n", ", columns: {x1: numeric}"),
        2,
        ("bad.csv", "row 3", "column 'x1'", "'abc'"),
    ),
    (
        "csv-markup-column",
        lambda c: c.train_csv("x0,[b],y\n1,2,0\n3,abc,1\n", ", columns: {'[b]': numeric}"),
        2,
        ("row 3", "column '[b]'", "'abc'"),
    ),
    (
        "csv-nan",
        lambda c: c.train_csv("x0,x1,y\n1,2,0\nnan,4,1\n", ", missing: error"),  # the default imputes
        2,
        ("bad.csv", "column 'x0'", "1 missing cell", "row 3", "data.missing"),
    ),
    ("csv-inf", lambda c: c.train_csv("x0,x1,y\n1,2,0\n3,-inf,1\n"), 2, ("row 3", "column 'x1'", "-inf", "finite")),
    (
        "csv-overflow",
        lambda c: c.train_csv("x0,x1,y\n1,2,0\n3,1e999,1\n"),
        2,
        ("row 3", "column 'x1'", "inf", "finite"),
    ),
    ("csv-duplicate-column", lambda c: c.train_csv("x0,x0,y\n1,2,0\n3,4,1\n"), 2, ("bad.csv", "'x0' appears twice")),
    (
        "csv-unnamed-column",
        lambda c: c.train_csv("x0,,y\n1,2,0\n3,4,1\n"),
        2,
        ("bad.csv", "header column 2 has no name"),
    ),
    (
        "csv-missing-target",
        lambda c: c.train_csv(GOOD_CSV, ", target: label"),
        2,
        ("bad.csv", "target column 'label' not found", "x0, x1, y"),
    ),
    ("csv-only-target", lambda c: c.train_csv("y\n0\n1\n"), 2, ("bad.csv", "no feature columns")),
    (
        "csv-empty-target",
        lambda c: c.train_csv("x0,x1,y\n1,2,0\n3,4,\n5,6,\n"),
        2,
        ("bad.csv", "column 'y'", "only one class"),
    ),
    ("csv-one-class", lambda c: c.train_csv("x0,x1,y\n1,2,a\n3,4,a\n5,6,a\n"), 2, ("bad.csv", "only one class", "'a'")),
    (
        "csv-regression-text-target",
        lambda c: c.train_csv("x0,x1,y\n1,2,0.5\n3,4,big\n", ", task: regression"),
        2,
        ("bad.csv", "column 'y'", "categorical", "regression"),
    ),
    ("csv-too-few-rows", lambda c: c.train_csv("x0,x1,y\n1,2,0\n3,4,1\n"), 2, ("not enough rows", "test_fraction")),
    (
        "csv-too-few-rows-regression",
        lambda c: c.train_csv("x0,y\n1,0.5\n2,1.5\n", ", task: regression"),
        2,
        ("not enough rows", "2 rows"),
    ),
    ("csv-not-utf8", lambda c: c.train_csv(b"x0,x1,y\n1,\xff\xfe,0\n"), 2, ("bad.csv", "cannot read as CSV")),
    # ---- NPZ data for training --------------------------------------------------------------------------
    (
        "npz-data-pickled",
        lambda c: c.train_text(f"data: {{path: {_pickled_xy(c.tmp / 'p.npz')}}}\n"),
        2,
        ("p.npz", "pickled"),
    ),
    (
        "npz-data-random-bytes",
        lambda c: c.train_text(f"data: {{path: {c.write('r.npz', bytes(range(256)) * 4)}}}\n"),
        2,
        ("r.npz", "cannot read as an .npz"),
    ),
    # ---- predict / evaluate data -----------------------------------------------------------------------
    (
        "predict-data-missing",
        lambda c: ["predict", str(c.model), str(c.tmp / "none.csv")],
        2,
        ("data file not found", "none.csv"),
    ),
    ("predict-data-empty", lambda c: c.predict(""), 2, ("in.csv", "file is empty")),
    ("predict-wrong-columns", lambda c: c.predict("a,b\n1,2\n"), 2, ("in.csv", "missing feature columns", "x0, x1")),
    ("predict-too-few-columns", lambda c: c.predict("x0\n1\n"), 2, ("in.csv", "missing feature columns", "x1")),
    (
        "predict-extra-column-strict",
        lambda c: [*c.predict("x0,x1,x2\n1,2,3\n"), "--strict"],
        2,
        ("in.csv", "unexpected columns x2", "--strict"),
    ),
    (
        "predict-non-numeric",
        lambda c: c.predict("x0,x1\n1,2\n3,four\n"),
        2,
        ("in.csv", "row 3", "column 'x1'", "'four'"),
    ),
    (
        "predict-nan",
        lambda c: c.predict("x0,x1\nNaN,2\n"),
        2,
        ("in.csv", "column 'x0'", "1 missing cell", "row 2", "data.missing"),
    ),
    ("predict-ragged", lambda c: c.predict("x0,x1\n1,2\n3,4,5\n"), 2, ("in.csv", "row 3", "3 fields")),
    ("evaluate-no-target", lambda c: c.evaluate("x0,x1\n1,2\n3,4\n"), 2, ("in.csv", "target column 'y' not found")),
    (
        "evaluate-unknown-class",
        lambda c: c.evaluate("x0,x1,y\n1,2,0\n3,4,7\n"),
        2,
        ("in.csv", "row 3", "class '7'", "not seen in training"),
    ),
    (
        "evaluate-regression-text-target",
        lambda c: c.evaluate("x,y\n1,0.5\n2,high\n", model=c.reg_model),
        2,
        ("in.csv", "row 3", "column 'y'", "'high'"),
    ),
    (
        "evaluate-regression-nan-target",
        lambda c: c.evaluate("x,y\n1,nan\n", model=c.reg_model),
        2,
        ("in.csv", "no rows with a target"),
    ),
    (
        "predict-regression-wrong-columns",
        lambda c: c.predict("x0,x1\n1,2\n", model=c.reg_model),
        2,
        ("in.csv", "missing feature columns", "x"),
    ),
    ("evaluate-empty-target", lambda c: c.evaluate("x0,x1,y\n1,2,\n3,4,\n"), 2, ("in.csv", "no rows with a target")),
    # ---- model files ------------------------------------------------------------------------------------
    ("model-missing", lambda c: c.predict(GOOD_CSV, model=c.tmp / "none.npz"), 2, ("model file not found", "none.npz")),
    (
        "model-not-zip",
        lambda c: c.predict(GOOD_CSV, model=c.write("m.npz", "hello, I am text\n")),
        2,
        ("m.npz", "not an mlpbp model file", "not a zip archive"),
    ),
    (
        "model-empty-file",
        lambda c: c.predict(GOOD_CSV, model=c.write("m.npz", b"")),
        2,
        ("m.npz", "not an mlpbp model file"),
    ),
    (
        "model-truncated",
        lambda c: c.predict(GOOD_CSV, model=c.write("m.npz", c.model.read_bytes()[:900])),
        2,
        ("m.npz", "not an mlpbp model file"),
    ),
    (
        "model-lone-npy",
        lambda c: c.predict(GOOD_CSV, model=c.write("m.npz", _npy_bytes())),
        2,
        ("m.npz", "not an mlpbp model file", "not a zip archive"),
    ),
    (
        "model-foreign-npz",
        lambda c: c.predict(GOOD_CSV, model=c.write("m.npz", _foreign_npz(c.tmp / "f.npz"))),
        2,
        ("m.npz", "not an mlpbp model file", "meta"),
    ),
    (
        "model-pickled-object",
        lambda c: c.predict(GOOD_CSV, model=c.write("m.npz", _pickled_npz(c.tmp / "p.npz"))),
        2,
        ("m.npz", "not an mlpbp model file"),
    ),
    (
        "model-evaluate-corrupt",
        lambda c: c.evaluate(GOOD_CSV, model=c.write("m.npz", b"PK\x03\x04garbage")),
        2,
        ("m.npz", "not an mlpbp model file"),
    ),
    ("model-format-version", lambda c: c.with_meta(format_version=99), 2, ("bad_model.npz", "format version 99")),
    (
        "model-meta-garbage",
        lambda c: c.with_model(lambda a: a.update(meta=np.array("{not json"))),
        2,
        ("bad_model.npz", "unreadable 'meta'"),
    ),
    (
        "model-meta-missing-key",
        lambda c: c.with_model(lambda a: a.update(meta=np.array('{"format_version": 1}'))),
        2,
        ("bad_model.npz", "widths"),
    ),
    ("model-bad-activation", lambda c: c.with_meta(activation=["relu"]), 2, ("bad_model.npz", "invalid architecture")),
    (
        "model-forged-huge-widths",
        lambda c: c.with_meta(widths=[2, 10**6, 10**6, 2]),
        2,
        ("bad_model.npz", "parameter W1"),
    ),
    ("model-feature-names-not-str", lambda c: c.with_meta(feature_names=[1, 2]), 2, ("bad_model.npz", "strings")),
    (
        "model-wrong-shape",
        lambda c: c.with_model(lambda a: a.update({"param.W1": a["param.W1"].T.copy()})),
        2,
        ("bad_model.npz", "parameter W1", "wrong shape"),
    ),
    ("model-missing-param", lambda c: c.with_model(lambda a: a.pop("param.b2")), 2, ("bad_model.npz", "parameter b2")),
    (
        "model-nan-weights",
        lambda c: c.with_model(lambda a: a["param.W2"].__setitem__((0, 0), np.nan)),
        2,
        ("bad_model.npz", "parameter W2", "not finite"),
    ),
    (
        "model-int-weights",
        lambda c: c.with_model(lambda a: a.update({"param.b1": a["param.b1"].astype(np.int64)})),
        2,
        ("bad_model.npz", "parameter b1"),
    ),
    (
        "model-zero-scale",
        lambda c: c.with_model(lambda a: a.update(x_scale=np.zeros(2))),
        2,
        ("bad_model.npz", "x_scale"),
    ),
    (
        "model-no-scaler",
        lambda c: c.with_model(lambda a: (a.pop("x_mean"), a.pop("x_scale"))),
        2,
        ("bad_model.npz", "x_mean"),
    ),
    # ---- checkpoints and --resume -----------------------------------------------------------------------
    (
        "resume-no-checkpoint",
        lambda c: ((c.out / "checkpoint.npz").unlink(), c.train("--resume"))[1],
        2,
        ("no checkpoint to resume from", "checkpoint.npz"),
    ),
    (
        "resume-corrupt-checkpoint",
        lambda c: c.with_checkpoint(b"\x00garbage" * 50),
        2,
        ("checkpoint.npz", "not a usable mlpbp checkpoint"),
    ),
    (
        "resume-truncated-checkpoint",
        lambda c: c.with_checkpoint((c.out / "checkpoint.npz").read_bytes()[:-300]),
        2,
        ("checkpoint.npz", "not a usable mlpbp checkpoint"),
    ),
    (
        "resume-foreign-npz",
        lambda c: c.with_checkpoint(_foreign_npz(c.tmp / "f.npz")),
        2,
        ("checkpoint.npz", "not a usable mlpbp checkpoint"),
    ),
    ("resume-forged-state", lambda c: c.with_checkpoint(_state(epoch="x")), 2, ("checkpoint.npz", "not a usable")),
    (
        "resume-forged-rng",
        lambda c: c.with_checkpoint(_state(epoch=0, rng_state={"a": 1})),
        2,
        ("checkpoint.npz", "not a usable"),
    ),
    (
        "resume-nan-free-but-text-params",
        lambda c: c.with_checkpoint(lambda a: a.update({"param.W1": a["param.W1"].astype(str)})),
        2,
        ("checkpoint.npz", "param.W1"),
    ),
    (
        "resume-other-config",
        lambda c: c.train("--resume", "--set", "train.learning_rate=0.1"),
        2,
        ("cannot resume", "another config", "train.learning_rate", "0.1"),
    ),
    (
        "resume-other-architecture",
        lambda c: c.train("--resume", "--set", "model.hidden=[5]"),
        2,
        ("checkpoint.npz", "param.W1", "(5, 2)"),
    ),
    # ---- more than the machine's memory: refused before allocating -------------------------------
    (
        "mem-hidden-too-wide",
        lambda c: c.train_text(M + "model: {hidden: [1000000000000]}\n"),
        2,
        ("config error at model.hidden:", "2-1000000000000-2 network", "PB", "of memory available"),
    ),
    (
        "mem-batch-too-large",  # the network fits; a batch of its activations would not
        lambda c: c.train_text(M + "model: {hidden: [100000]}\ntrain: {batch_size: 100000000}\n"),
        2,
        ("config error at train.batch_size:", "needs about", "TB", "of memory available"),
    ),
    (
        "mem-too-many-rows",
        lambda c: c.train_text("data: {dataset: moons, n_samples: 100000000000000}\n"),
        2,
        ("config error at data.n_samples:", "generating 100,000,000,000,000 rows", "of memory available"),
    ),
    (
        "mem-gradcheck-too-wide",
        lambda c: ["gradcheck", str(c.write("c.yaml", M + "model: {hidden: [1000000000000]}\n"))],
        2,
        ("config error at model.hidden:", "of memory available"),
    ),
    (
        "mem-bench-too-deep",
        lambda c: ["bench", "--depth", "1000000", "--width", "100000"],
        2,
        ("--depth 1000000 at width 100000", "of memory available"),
    ),
]


def _pickled_xy(path: Path) -> Path:
    np.savez(path, X=np.zeros((4, 2)), y=np.array([{"a": 1}] * 4, dtype=object))
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def ctx(tmp_path, good_run, good_regression_model) -> Ctx:
    out = tmp_path / "out"
    shutil.copytree(good_run, out)
    (out / "predictions.csv").write_text("prediction\n0\n")
    inputs = tmp_path / "in"
    inputs.mkdir()
    cfg = inputs / "tiny.yaml"
    cfg.write_text(TINY_CONFIG)
    data = inputs / "data.csv"
    data.write_text(GOOD_CSV)
    return Ctx(inputs, out, cfg, data, good_regression_model)


def test_there_are_at_least_40_cases():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("build, code, needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input(ctx, runner, build, code, needles):
    argv = build(ctx)
    before = _snapshot(ctx.out)
    res = runner.invoke(app, argv)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == code, (res.exit_code, res.stderr, res.exception)
    assert isinstance(res.exception, SystemExit), res.exception  # nothing else escaped
    assert "Traceback" not in res.stderr + res.stdout
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert _snapshot(ctx.out) == before, "an existing output file changed"


def test_divergence_is_one_line_exit_1_and_leaves_old_outputs(ctx, runner, monkeypatch):
    # No epoch-end checkpoint in this run (it diverges within ~2 epochs of milliseconds):
    # the previous run's files must survive. config.yaml is rewritten when a run starts.
    monkeypatch.setattr("mlpbp.run.trainer.CHECKPOINT_INTERVAL_S", 1e9)
    argv = ctx.train("--set", "train.learning_rate=1e9", "--set", "train.epochs=50")
    before = _snapshot(ctx.out)
    res = runner.invoke(app, argv)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == 1, res.stderr
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "diverged at epoch" in lines[0] and "try a smaller learning rate" in lines[0]
    assert "loss=nan" in lines[0] or "loss=inf" in lines[0]
    after = _snapshot(ctx.out)
    before.pop("config.yaml"), after.pop("config.yaml")
    assert after == before


# A few cases again as real processes: what a user sees, with no traceback and no warnings.
SUBPROCESS_CASES = ["cfg-unknown-nested-key", "csv-non-numeric", "model-truncated", "resume-corrupt-checkpoint"]


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_hostile_input_as_a_process(ctx, case_id):
    _, build, code, needles = next(c for c in CASES if c[0] == case_id)
    argv = build(ctx)
    before = _snapshot(ctx.out)
    res = subprocess.run(
        [PYTHON, "-m", "mlpbp", *argv], capture_output=True, text=True, env=subprocess_env(), cwd=ROOT, timeout=60
    )
    assert res.returncode == code, res.stderr
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and all(n in lines[0] for n in needles), res.stderr
    assert _snapshot(ctx.out) == before


def test_console_script_reports_one_line(ctx):
    exe = shutil.which("mlpbp")
    if exe is None:
        pytest.skip("mlpbp console script not installed (pip install -e .)")
    res = subprocess.run(
        [exe, *ctx.train_text(M + "train: {epochs: 0}\n")],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "train.epochs" in lines[0], res.stderr


def test_divergence_before_any_checkpoint_leaves_every_file_as_it_was(ctx, runner, monkeypatch):
    # config.yaml included: it describes the run whose checkpoint is in the folder, and this
    # run diverges before writing one.
    argv = ctx.train("--set", "train.learning_rate=1e9", "--set", "train.epochs=50")
    before = _snapshot(ctx.out)
    res = runner.invoke(app, argv)
    assert res.exit_code == 1 and "diverged at epoch 1," in res.stderr, res.stderr
    assert "last good checkpoint" not in res.stderr
    assert _snapshot(ctx.out) == before


def _blocked_in_fifo_open(pid: int) -> bool:
    """Whether the process sleeps opening a FIFO (wchan is "0" while it runs)."""
    try:
        wchan = Path(f"/proc/{pid}/wchan").read_text().strip()
    except OSError:
        return False
    return wchan in ("wait_for_partner", "fifo_open", "pipe_wait")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])  # SIGTERM: a stop too
def test_ctrl_c_while_reading_data_names_the_file(ctx, signum, code):
    # A named pipe nobody writes to: reading it blocks until the Ctrl-C, whatever the timing.
    fifo = ctx.tmp / "slow.csv"
    os.mkfifo(fifo)
    argv = ctx.train_text("data: {path: slow.csv}\ntrain: {epochs: 1}\n")
    before = _snapshot(ctx.out)
    proc = subprocess.Popen(
        [PYTHON, "-m", "mlpbp", *argv], stderr=subprocess.PIPE, text=True, env=subprocess_env(), cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 60
        while not _blocked_in_fifo_open(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if not _blocked_in_fifo_open(proc.pid):
            pytest.skip("cannot see the process wait in open() (/proc/PID/wchan)")
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert proc.returncode == code, stderr
    assert lines == [f"error: interrupted while reading {fifo}"], stderr
    assert _snapshot(ctx.out) == before


def test_memory_error_while_reading_data_names_the_file_and_its_size(ctx, runner, monkeypatch):
    data = ctx.write("big.csv", GOOD_CSV)

    def exhausted(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr("mlpbp.data.tables._read_csv", exhausted)
    argv = ctx.train_text("data: {path: big.csv}\ntrain: {epochs: 1}\n")
    before = _snapshot(ctx.out)
    res = runner.invoke(app, argv)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == 2, res.stderr
    assert data.stat().st_size < 1000  # so its size reads in bytes
    assert lines == [f"error: {data}: not enough memory to read this file ({data.stat().st_size} bytes)"], res.stderr
    assert _snapshot(ctx.out) == before
