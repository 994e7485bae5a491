"""Categorical embeddings (data.categorical, data.embedding_dim): which columns auto embeds and
how wide, the codes and the reserved row for unseen levels, gradients against finite
differences and torch, the model file, the ONNX graph in onnxruntime, and training on a table
with a high-cardinality column."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from helpers import one_line_error
from mlpbp.data.preprocessing import AUTO_ONEHOT_LEVELS, embedding_size
from mlpbp.run.config import config_from_dict
from mlpbp.run.model_file import format_version, load_model
from mlpbp.run.prepare import build_model, prepare
from mlpbp.run.trainer import Trainer
from mlpbp.tools.gradcheck import check_config


def city_table(path, n: int = 3000, levels: int = 60, seed: int = 0):
    """A label driven by a city's two hidden traits (one alone, one times x) and by x: 60 cities,
    about 40 training rows each; and a 3-level column that stays one-hot."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(levels, 2))
    city = rng.integers(0, levels, n)
    x = rng.normal(size=n)
    logit = 2.0 * latent[city, 0] + 1.5 * x * latent[city, 1] + 0.5 * x
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    plan = np.array(["basic", "pro", "team"])[rng.integers(0, 3, n)]
    lines = ["city,plan,x,y"] + [f"c{c:03d},{p},{v:.4f},{t}" for c, p, v, t in zip(city, plan, x, y)]
    path.write_text("\n".join(lines) + "\n")
    return path


def config(tmp_path, seed: int = 0, train: dict | None = None, **data):
    return config_from_dict(
        {"seed": seed, "data": {"path": "t.csv", "target": "y", **data}, "train": {"threads": 1, **(train or {})}},
        base_dir=tmp_path,
        name="emb",
    )


def test_auto_embeds_above_16_levels_with_fastais_size(tmp_path):
    city_table(tmp_path / "t.csv")
    p = prepare(config(tmp_path), dtype="float64")
    cols = {c.name: c for c in p.preprocessor.columns}
    assert cols["city"].embedded and not cols["plan"].embedded and AUTO_ONEHOT_LEVELS == 16
    assert len(cols["city"].categories) == 60 and cols["city"].dim == embedding_size(60) == 16  # 1.6·60^0.56
    assert [embedding_size(n) for n in (2, 17, 100, 10**6)] == [2, 8, 21, 600]
    # one input column holds the city's code (its index among the sorted levels), unscaled
    pre = p.preprocessor
    assert pre.feature_names == ["city", "plan=basic", "plan=pro", "plan=team", "x"]
    assert pre.embeddings == [(0, 60, 16)] and pre.plain_columns == [1, 2, 3, 4] and pre.encoded_width == 20
    codes = p.train[0][:, 0]
    assert set(np.unique(codes)) <= set(range(60)) and pre.mean[0] == 0 and pre.scale[0] == 1
    assert p.notes == [
        "column 'city': 60 levels, each a learned vector of 16 (data.categorical: auto: more than 16 levels);"
        " an unseen level reads a reserved zero row"
    ]
    # per column, and a width of its own
    q = prepare(config(tmp_path, categorical={"plan": "embedding"}, embedding_dim={"plan": 3}), dtype="float64")
    cols = {c.name: c for c in q.preprocessor.columns}
    assert cols["plan"].embedded and cols["plan"].dim == 3 and cols["city"].embedded
    r = prepare(config(tmp_path, categorical="onehot", max_categories=60), dtype="float64")
    assert not any(c.embedded for c in r.preprocessor.columns) and r.preprocessor.width == 60 + 3 + 1


def test_one_hot_beyond_max_categories_says_to_embed(tmp_path):
    city_table(tmp_path / "t.csv")
    message = one_line_error(prepare, config(tmp_path, categorical="onehot"))
    assert message == (
        "t.csv: column 'city' has 60 levels, more than data.max_categories 50 for a one-hot column:"
        " embed it (data.categorical: {city: embedding}), raise data.max_categories, or put it in data.drop"
        " (or data.id) if it is a name or an ID"
    )
    message = one_line_error(prepare, config(tmp_path, categorical={"town": "embedding"}))
    assert message == "config error at data.categorical: 'town' is not a feature column (features: city, plan, x)"


def test_unseen_and_rare_levels_codes(tmp_path):
    # 20 frequent levels, two rare ones (3 rows each) sharing the infrequent level
    rows = [f"k{i % 20:02d},{i % 7},{'yes' if i % 3 else 'no'}" for i in range(400)]
    rows += [f"rare{i % 2},{i},no" for i in range(6)]
    (tmp_path / "t.csv").write_text("key,x,y\n" + "\n".join(rows) + "\n")
    cfg = config(tmp_path, test_fraction=0, validation_fraction=0, train={"epochs": 1})
    p = prepare(cfg, dtype="float64")
    (key, _) = p.preprocessor.columns
    assert key.embedded and key.categories[-1] == "infrequent" and key.rare == ["rare0", "rare1"]
    pre = p.preprocessor
    t = pa.table({"key": ["k03", "rare1", "never", None], "x": [1.0, 2.0, 3.0, 4.0]})
    # infrequent (the default): a rare level and an unseen one share the infrequent level's code
    np.testing.assert_array_equal(pre.transform(t)[:, 0], [3, 20, 20, 20])
    # ignore: the unseen level (and a missing cell the training split never had) reads the reserved row
    np.testing.assert_array_equal(pre.transform(t, unknown="ignore")[:, 0], [3, 20, 21, 21])
    message = one_line_error(pre.transform, t.slice(2, 1), unknown="error")
    assert message == (
        "row 0, column 'key': category 'never' was not seen in training"
        " (known: k00, k01, k02, k03, k04, k05, k06, k07, ... (21 in all));"
        " train with data.handle_unknown: ignore (all zeros) or infrequent to encode unseen categories"
    )


def test_embedding_gradients_match_finite_differences_and_torch(tmp_path):
    torch = pytest.importorskip("torch")
    city_table(tmp_path / "t.csv", n=400, levels=30)
    cfg = config(tmp_path)
    p = prepare(cfg, dtype="float64")
    net = build_model(cfg, p.preprocessor.width, p.n_outputs, p.task, dtype="float64", preprocessor=p.preprocessor)
    X, y = p.train[0][:64], p.train[1][:64]
    value, grads = net.loss_and_grad(X, y)
    assert "E1" in grads and grads["E1"].shape == (31, embedding_size(30))  # 30 levels + the reserved row
    assert not grads["E1"][-1].any()  # the reserved row is never read in training
    # central differences along every embedding entry of the rows this batch reads
    theta = net.get_flat()
    offsets = np.cumsum([0] + [q.size for q in net.params.values()])
    start = offsets[list(net.params).index("E1")]
    rows = np.unique(X[:, 0].astype(int))[:5]
    dim = grads["E1"].shape[1]
    for r in rows:
        for k in range(dim):
            i, eps = start + r * dim + k, 1e-6
            t = theta.copy()
            t[i] += eps
            net.set_flat(t)
            up = net.loss(X, y)
            t[i] -= 2 * eps
            net.set_flat(t)
            down = net.loss(X, y)
            np.testing.assert_allclose((up - down) / (2 * eps), grads["E1"][r, k], rtol=1e-6, atol=1e-9)
    net.set_flat(theta)
    # torch: the same graph (plain columns beside the embedding, then the hidden layer)
    P = {k: torch.tensor(v, requires_grad=True) for k, v in net.params.items()}
    Xt = torch.as_tensor(X)
    h = torch.cat([Xt[:, p.preprocessor.plain_columns], P["E1"][torch.as_tensor(X[:, 0].astype(np.int64))]], dim=1)
    h = torch.relu(h @ P["W1"].T + P["b1"])
    o = h @ P["W2"].T + P["b2"]
    loss = torch.nn.functional.cross_entropy(o, torch.as_tensor(y))
    loss.backward()
    assert abs(loss.item() - value) < 1e-12
    for k, g in grads.items():
        np.testing.assert_allclose(g, P[k].grad.numpy(), rtol=1e-9, atol=1e-12)
    # and the whole gradcheck (gradients, module input gradients, HVPs) on the config's network
    report = check_config(cfg)
    assert report.ok, [c.to_dict() for c in report.failures]


def test_save_load_predict_and_onnx_of_an_embedded_model(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from mlpbp.tools.export import to_onnx

    city_table(tmp_path / "t.csv", n=600, levels=30)
    cfg = config(tmp_path, train={"epochs": 5})
    result = Trainer(cfg, prepare(cfg), tmp_path / "run").run()
    model = result.model
    assert format_version(model) == 4
    loaded = load_model(tmp_path / "run" / "model.npz")
    assert loaded.preprocessor.to_meta() == model.preprocessor.to_meta()
    new = pa.table(
        {
            "city": ["c001", "c017", "atlantis", "c029", None],
            "plan": ["pro", "basic", "team", "pro", "team"],
            "x": [0.5, -1.0, 2.0, 0.0, 1.0],
        }
    )
    want = model.predict_outputs(new)
    np.testing.assert_array_equal(loaded.predict_outputs(new), want)
    # an unseen city reads the reserved row: zeros, as if the city added nothing
    X = loaded.preprocessor.transform(new)
    assert X[2, 0] == 30 and X[4, 0] == 30 and not loaded.net.params["E1"][30].any()
    same = new.set_column(0, "city", pa.array(["c001", "c017", "elsewhere", "c029", None]))
    np.testing.assert_array_equal(loaded.predict_outputs(same), want)
    # ONNX: levels to codes (matched as predict matches cells), the table's row by Gather
    proto = to_onnx(loaded)
    ops = {n.op_type for n in proto.graph.node}
    assert {"RegexFullMatch", "Gather"} <= ops
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {
        "city": np.array([v or "" for v in new.column("city").to_pylist()], dtype=object)[:, None],
        "plan": np.array(new.column("plan").to_pylist(), dtype=object)[:, None],
        "x": np.array(new.column("x").to_pylist(), np.float32)[:, None],
    }
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    p = np.exp(want - want.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got["probabilities"], p, atol=1e-5)
    assert list(got["label"]) == [model.classes[k] for k in want.argmax(axis=1)]
    # cells with spaces around them read as predict reads them (the reader strips them)
    feeds["city"] = np.array([f"  {v} " for v in feeds["city"][:, 0]], dtype=object)[:, None]
    padded = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    np.testing.assert_allclose(padded["probabilities"], p, atol=1e-5)


def test_embeddings_match_one_hot_on_a_high_cardinality_table(tmp_path):
    """60 cities of about 40 training rows each: embedded (auto) against one-hot, the default
    recipe otherwise, on the same rows; the Bayes rate of this table is about 0.80."""
    city_table(tmp_path / "t.csv")
    scores = {}
    for how in ("auto", "onehot"):
        cfg = config(tmp_path, categorical=how, max_categories=100)
        result = Trainer(cfg, prepare(cfg), tmp_path / how).run()
        scores[how] = result.test["accuracy"]
    assert scores["auto"] >= 0.77, scores
    assert scores["auto"] >= scores["onehot"] - 0.01, scores
