"""Multi-label targets: one column of label sets split by data.label_separator, or one 0/1
column per label; binary_cross_entropy (a sigmoid per label), per-label metrics, label sets
written by predict, the label list in model.npz; and the one-line refusals.

- The metrics are scikit-learn's for multilabel indicators (subset accuracy, Hamming loss,
  macro and micro F1, per-label precision, recall, F1 and support), weighted too.
- The same rows as label sets or as 0/1 columns train the same network (bit for bit).
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from helpers import PYTHON, one_line_error, subprocess_env
from mlpbp.errors import ConfigError
from mlpbp.run.config import config_from_dict
from mlpbp.run.metrics import compute_metrics
from mlpbp.run.model_file import load_model
from mlpbp.run.prepare import prepare
from mlpbp.run.trainer import train

LABELS = ["news", "sport", "tech"]


def _rows(n=240, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    Y = np.column_stack([X[:, 1] + X[:, 2] > 0, X[:, 0] > 0.3, X[:, 3] < -0.5]).astype(int)
    return X, Y


def _write_sets(path, X, Y, sep="|"):
    with path.open("w") as f:
        f.write("a,b,c,d,tags\n")
        for x, y in zip(X, Y):
            tags = sep.join(c for c, on in zip(LABELS, y) if on)
            f.write(",".join(repr(float(v)) for v in x) + f",{tags}\n")
    return path


def _write_columns(path, X, Y):
    with path.open("w") as f:
        f.write("a,b,c,d," + ",".join(LABELS) + "\n")
        for x, y in zip(X, Y):
            f.write(",".join(repr(float(v)) for v in x) + "," + ",".join(map(str, y)) + "\n")
    return path


def _config(data: dict, **train_keys) -> dict:
    return {
        "seed": 2,
        "data": data,
        "model": {"hidden": [8], "activation": "tanh"},
        "train": {"epochs": 4, "dtype": "float64", "optimizer": "adam", "batch_size": 16, **train_keys},
    }


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "mlpbp", *args], capture_output=True, text=True, env=subprocess_env())


def test_multilabel_metrics_are_scikit_learns():
    metrics = pytest.importorskip("sklearn.metrics")
    from mlpbp import MLP

    rng = np.random.default_rng(3)
    X = rng.standard_normal((200, 4))
    Y = (rng.random((200, 3)) < [0.5, 0.3, 0.1]).astype(np.float64)
    net = MLP([4, 6, 3], "tanh", "binary_cross_entropy", seed=1, dtype="float64", task="classification")
    pred = (net.forward(X) > 0).astype(int)
    for w in (None, rng.uniform(0, 2, 200)):
        got = compute_metrics(net, X, Y, classes=LABELS, sample_weight=w)
        assert got["subset_accuracy"] == got["accuracy"]
        assert got["accuracy"] == pytest.approx(metrics.accuracy_score(Y, pred, sample_weight=w), rel=1e-12)
        assert got["hamming_loss"] == pytest.approx(metrics.hamming_loss(Y, pred, sample_weight=w), rel=1e-12)
        for avg in ("macro", "micro"):
            want = metrics.f1_score(Y, pred, average=avg, sample_weight=w, zero_division=0)
            assert got[f"{avg}_f1"] == pytest.approx(want, rel=1e-12), avg
        p, r, f, s = metrics.precision_recall_fscore_support(Y, pred, sample_weight=w, zero_division=0)
        for i, rec in enumerate(got["per_label"]):
            assert rec["label"] == LABELS[i]
            assert (rec["precision"], rec["recall"], rec["f1"], rec["support"]) == pytest.approx(
                (p[i], r[i], f[i], s[i])
            )
        assert got["loss"] == pytest.approx(net.loss(X, Y, w), rel=1e-12)
        assert isinstance(got["per_label"][0]["support"], int if w is None else float)


def test_label_sets_train_predict_and_evaluate(tmp_path):
    X, Y = _rows()
    csv = _write_sets(tmp_path / "t.csv", X, Y)
    cfg = config_from_dict(_config({"path": str(csv), "target": "tags", "label_separator": "|"}))
    r = train(cfg, tmp_path / "run")
    assert r.model.net.loss_name == "binary_cross_entropy" and r.model.net.widths[-1] == 3
    assert r.test["per_label"][0]["label"] == "news" and "hamming_loss" in r.test
    model = load_model(tmp_path / "run" / "model.npz")
    assert model.multilabel and model.classes == LABELS and model.label_separator == "|"
    # the epoch table and history.csv: subset accuracy, Hamming losses and the validation macro F1
    data = prepare(cfg)
    val = compute_metrics(model.net, *data.val, classes=LABELS)
    last = r.history[-1]
    assert last["val_accuracy"] == pytest.approx(val["subset_accuracy"], rel=1e-12)
    assert last["val_hamming_loss"] == pytest.approx(val["hamming_loss"], rel=1e-12)
    assert last["val_macro_f1"] == pytest.approx(val["macro_f1"], rel=1e-12)
    header = (tmp_path / "run" / "history.csv").read_text().splitlines()[0].split(",")
    assert {"train_hamming_loss", "val_hamming_loss", "val_macro_f1", "val_accuracy"} <= set(header)
    assert model.config["model"]["loss"] == "binary_cross_entropy"  # the saved config names the loss used

    p = _run("predict", str(tmp_path / "run" / "model.npz"), str(csv))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "labels,p_news,p_sport,p_tech"
    import pyarrow.csv as pacsv

    o = model.predict_outputs(pacsv.read_csv(csv))
    want = ["|".join(s) for s in model.label_sets(o)]
    got = [line.split(",")[0] for line in lines[1:]]
    assert got == want and len(got) == 240  # rows without a label are the empty set, not dropped
    probs = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-o)), rtol=1e-5)
    assert ((probs > 0.5) == (o > 0)).all()

    e = _run("evaluate", str(tmp_path / "run" / "model.npz"), str(csv), "--json")
    assert e.returncode == 0, e.stderr
    ev = json.loads(e.stdout)
    assert ev["rows"] == 240 and [x["label"] for x in ev["per_label"]] == LABELS
    assert [x["support"] for x in ev["per_label"]] == Y.sum(axis=0).tolist()
    assert ev["subset_accuracy"] == pytest.approx(float(((o > 0) == Y).all(axis=1).mean()))
    text = _run("evaluate", str(tmp_path / "run" / "model.npz"), str(csv))
    assert "Hamming loss" in text.stdout and "label" in text.stdout and "sport" in text.stdout

    from mlpbp.tools.gradcheck import check_config

    assert check_config(cfg, batch=8).ok


def test_label_sets_and_01_columns_train_the_same_network(tmp_path):
    X, Y = _rows(seed=4)
    sets = config_from_dict(
        _config({"path": str(_write_sets(tmp_path / "s.csv", X, Y, sep=";")), "target": "tags", "label_separator": ";"})
    )
    cols = config_from_dict(
        _config({"path": str(_write_columns(tmp_path / "c.csv", X, Y)), "target": LABELS, "task": "classification"})
    )
    a, b = train(sets, tmp_path / "a"), train(cols, tmp_path / "b")
    for k, p in a.model.net.params.items():
        np.testing.assert_array_equal(p, b.model.net.params[k])
    assert a.history == b.history or [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert load_model(tmp_path / "b" / "model.npz").label_separator is None
    p = _run("predict", str(tmp_path / "b" / "model.npz"), str(tmp_path / "c.csv"))
    assert p.returncode == 0 and p.stdout.splitlines()[0] == "labels,p_news,p_sport,p_tech"
    # 0/1 columns with the loss named instead of the task
    via_loss = _config({"path": str(tmp_path / "c.csv"), "target": LABELS})
    via_loss["model"]["loss"] = "binary_cross_entropy"
    assert prepare(config_from_dict(via_loss)).multilabel


def test_bad_multilabel_input_is_one_line(tmp_path):
    X, Y = _rows(n=60)
    csv = _write_sets(tmp_path / "t.csv", X, Y)
    train(config_from_dict(_config({"path": str(csv), "target": "tags", "label_separator": "|"})), tmp_path / "run")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c,d,tags\n1,2,3,4,news\n1,2,3,4,sport|music\n")
    e = _run("evaluate", str(tmp_path / "run" / "model.npz"), str(bad))
    assert e.returncode == 2 and e.stderr.strip().count("\n") == 0
    assert (
        "bad.csv: row 3, column 'tags': label 'music' was not seen in training (known: news, sport, tech)" in e.stderr
    )

    ex = _run("export", str(tmp_path / "run" / "model.npz"), "--out", str(tmp_path / "m.onnx"))
    assert ex.returncode == 2 and "multi-label model" in ex.stderr and ex.stderr.strip().count("\n") == 0

    cols = _write_columns(tmp_path / "c.csv", X, Y)
    text = cols.read_text().splitlines()
    text[5] = text[5][: text[5].rfind(",")] + ",2"
    cols.write_text("\n".join(text) + "\n")
    msg = one_line_error(
        prepare, config_from_dict(_config({"path": str(cols), "target": LABELS, "task": "classification"}))
    )
    assert "c.csv: row 6, column 'tech': 2 is not 0 or 1" in msg

    ce = _config({"path": str(csv), "target": "tags", "label_separator": "|"})
    ce["model"]["loss"] = "cross_entropy"
    msg = one_line_error(prepare, config_from_dict(ce))
    assert "a multi-label target" in msg and "takes binary_cross_entropy" in msg

    with pytest.raises(ConfigError, match="label_separator splits one target column"):
        config_from_dict(_config({"path": str(cols), "target": LABELS, "label_separator": "|"}))


def test_binary_cross_entropy_on_a_multiclass_label_column_says_use_cross_entropy(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "m.csv"
    path.write_text("a,b,kind\n" + "".join(f"{rng.normal()},{rng.normal()},{'xyz'[i % 3]}\n" for i in range(30)))
    cfg = _config({"path": str(path), "target": "kind"})
    cfg["model"]["loss"] = "binary_cross_entropy"
    msg = one_line_error(prepare, config_from_dict(cfg))
    assert "holds one of 3 classes per row: use cross_entropy" in msg, msg
    (tmp_path / "c.yaml").write_text(json.dumps(cfg))
    r = _run("train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "use cross_entropy" in r.stderr and r.stderr.strip().count("\n") == 0


def test_poisson_with_a_negative_target_is_one_line_naming_row_and_column(tmp_path):
    rng = np.random.default_rng(1)
    counts = rng.poisson(2.0, 40)
    counts[7] = -1
    path = tmp_path / "counts.csv"
    path.write_text("a,n\n" + "".join(f"{rng.normal()},{c}\n" for c in counts))
    cfg = _config({"path": str(path), "target": "n", "task": "regression"})
    cfg["model"]["loss"] = "poisson"
    msg = one_line_error(prepare, config_from_dict(cfg))
    assert "counts.csv: row 9, column 'n': -1 is negative; the poisson loss takes counts" in msg, msg
    counts[7] = 3
    path.write_text("a,n\n" + "".join(f"{rng.normal()},{c}\n" for c in counts))
    data = prepare(config_from_dict(cfg))
    assert data.y_scaler is None  # counts stay counts: no target standardisation under poisson
    cfg["data"]["target_transform"] = "standardize"
    assert "poisson loss fits counts in their own units" in one_line_error(prepare, config_from_dict(cfg))
