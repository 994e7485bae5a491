"""Periodic embeddings of numeric columns (data.numeric: periodic, Gorishniy et al. 2022): the
module's gradients and Hessian-vector products against central differences and torch in
float64, the network a periodic column builds, gradcheck, the model file, the ONNX graph in
onnxruntime, the wavy latitude it fits, and the one-line errors for bad settings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from helpers import one_line_error
from mlpbp.data.preprocessing import Preprocessor
from mlpbp.engine.embedding import Select
from mlpbp.engine.graph import Network
from mlpbp.engine.layers import Activation, Linear
from mlpbp.engine.module import Input
from mlpbp.engine.periodic import Periodic
from mlpbp.run.config import config_from_dict
from mlpbp.run.model_file import format_version, load_model
from mlpbp.run.prepare import prepare
from mlpbp.run.trainer import Trainer
from mlpbp.tools.gradcheck import check_config


def _net(seed: int = 1, loss: str = "square"):
    """Two periodic modules: one on selected input columns, one on a hidden layer's output (so
    its input gradient and R{u} are exercised), each through a linear after it."""
    x = Input(3)
    a = Periodic(frequencies=4, sigma=0.5)(Select(columns=[0, 2])(x))
    b = Periodic(frequencies=2, sigma=0.3)(Activation("tanh")(Linear(2)(x)))
    from mlpbp.engine.combine import Concat

    h = Activation("tanh")(Linear(5)(Concat()(a, b)))
    return Network(x, Linear(2)(h), loss=loss, seed=seed)


def test_forward_is_sin_and_cos_of_2pi_c_x_per_column():
    x = Input(2)
    m = Periodic(frequencies=3, sigma=1.0)
    net = Network(x, m(x), loss="square", seed=0)
    c = net.params["periodic1.frequencies"]
    assert c.shape == (2, 3) and m.options() == {"frequencies": 3, "sigma": 1.0}
    # drawn from N(0, sigma^2) by the network's seeded init generator
    np.testing.assert_array_equal(c, np.random.default_rng(0).normal(0.0, 1.0, (2, 3)))
    X = np.array([[0.5, -1.0], [2.0, 0.25]])
    z = 2 * np.pi * X[:, :, None] * c[None]
    want = np.concatenate([np.sin(z), np.cos(z)], axis=2).reshape(2, 12)
    np.testing.assert_allclose(net.forward(X), want, rtol=0, atol=1e-15)


def test_gradient_and_hvp_match_central_differences():
    rng = np.random.default_rng(0)
    net = _net()
    X, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 2))
    _, g = net.loss_and_grad(X, y)
    theta, grad = net.get_flat(), net.flatten(g)
    num = np.empty_like(theta)
    for i in range(theta.size):
        t = theta.copy()
        t[i] += 1e-6
        net.set_flat(t)
        up = net.loss(X, y)
        t[i] -= 2e-6
        net.set_flat(t)
        num[i] = (up - net.loss(X, y)) / 2e-6
    net.set_flat(theta)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8)
    v = {k: rng.normal(size=p.shape) for k, p in net.params.items()}
    hv, vf = net.flatten(net.hvp(X, y, v)), net.flatten(v)

    def grad_at(t):
        net.set_flat(t)
        return net.flatten(net.loss_and_grad(X, y)[1])

    fd = (grad_at(theta + 1e-5 * vf) - grad_at(theta - 1e-5 * vf)) / 2e-5
    net.set_flat(theta)
    np.testing.assert_allclose(hv, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())


def test_loss_gradient_hvp_and_gauss_newton_match_torch_in_float64():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    net = _net(seed=2, loss="cross_entropy")
    X, y = rng.normal(size=(9, 3)), rng.integers(0, 2, 9)
    v = {k: rng.normal(size=p.shape) for k, p in net.params.items()}
    J, g = net.loss_and_grad(X, y)
    hv, gv = net.hvp(X, y, v), net.gnvp(X, y, v)
    names = list(net.params)
    tau = 2 * np.pi

    def periodic(u, c):
        z = tau * u[:, :, None] * c[None]
        return torch.cat([torch.sin(z), torch.cos(z)], dim=2).reshape(u.shape[0], -1)

    def output(*ps):
        P = dict(zip(names, ps))
        Xt = torch.as_tensor(X)
        a = periodic(Xt[:, [0, 2]], P["periodic1.frequencies"])
        b = periodic(torch.tanh(Xt @ P["W1"].T + P["b1"]), P["periodic2.frequencies"])
        h = torch.tanh(torch.cat([a, b], dim=1) @ P["W2"].T + P["b2"])
        return h @ P["W3"].T + P["b3"]

    params = [torch.tensor(net.params[n], requires_grad=True) for n in names]
    loss = torch.nn.functional.cross_entropy(output(*params), torch.as_tensor(y))
    grads = torch.autograd.grad(loss, params, create_graph=True)
    hv_t = torch.autograd.grad(grads, params, [torch.as_tensor(v[n]) for n in names])
    assert J == pytest.approx(loss.item(), rel=1e-12)
    for n, gt, ht in zip(names, grads, hv_t):
        np.testing.assert_allclose(g[n], gt.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(hv[n], ht.numpy(), rtol=1e-8, atol=1e-10)
    # Gauss-Newton: J_o^T H_L J_o v
    o, jv = torch.func.jvp(output, tuple(p.detach() for p in params), tuple(torch.as_tensor(v[n]) for n in names))
    o = o.detach().requires_grad_(True)
    (go,) = torch.autograd.grad(torch.nn.functional.cross_entropy(o, torch.as_tensor(y)), o, create_graph=True)
    (hjv,) = torch.autograd.grad(go, o, jv)
    _, vjp = torch.func.vjp(output, *(p.detach() for p in params))
    for n, gt in zip(names, vjp(hjv)):
        np.testing.assert_allclose(gv[n], gt.numpy(), rtol=1e-8, atol=1e-10)


def _table(path, n: int = 2000, seed: int = 0):
    """price = 3 sin(2 lat) + log(size) + noise (sd 0.1), lat in [40, 50] (three periods); one
    lat cell in 40 missing (imputed)."""
    rng = np.random.default_rng(seed)
    lat, size = rng.uniform(40, 50, n), rng.lognormal(3, 0.5, n)
    price = np.sin(2 * lat) * 3 + np.log(size) + rng.normal(0, 0.1, n)
    lines = ["lat,size,price"] + [
        f"{'' if i % 40 == 0 else f'{a:.4f}'},{s:.3f},{p:.4f}" for i, (a, s, p) in enumerate(zip(lat, size, price))
    ]
    path.write_text("\n".join(lines) + "\n")


def _config(tmp_path, **data):
    return config_from_dict(
        {
            "seed": 0,
            "data": {"path": "t.csv", "target": "price", "numeric": {"lat": "periodic"}, **data},
            "train": {"threads": 1},
        },
        base_dir=tmp_path,
        name="periodic",
    )


def test_a_periodic_column_trains_saves_predicts_and_exports(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from mlpbp.tools.export import to_onnx

    _table(tmp_path / "t.csv")
    cfg = _config(tmp_path, periodic_frequencies=8, periodic_sigma=0.5, periodic_embedding=6)
    p = prepare(cfg, dtype="float64")
    pre = p.preprocessor
    lat = pre.columns[0]
    assert lat.periodic == {"frequencies": 8, "sigma": 0.5} and lat.dim == 6 and lat.fill is not None
    assert pre.feature_names == ["lat", "size"] and pre.periodic_embeddings == [(0, 8, 0.5, 6)]
    assert pre.plain_columns == [1] and pre.encoded_width == 7
    assert abs(p.train[0][:, 0].mean()) < 0.1  # standardised before the embedding
    report = check_config(cfg)  # gradients, module input gradients and HVPs against finite differences
    assert report.ok, [c.to_dict() for c in report.failures]
    result = Trainer(cfg, prepare(cfg), tmp_path / "run").run()
    net = result.model.net
    kinds = [m.kind for m in net.layers]
    assert kinds[:6] == ["select", "select", "periodic", "linear", "relu", "concat"]
    assert net.params["periodic1.frequencies"].shape == (1, 8) and net.params["W1"].shape == (6, 16)
    assert result.test["rmse"] < 0.5, result.test
    loaded = load_model(tmp_path / "run" / "model.npz")
    assert format_version(loaded) == 4 and loaded.preprocessor.to_meta() == result.model.preprocessor.to_meta()
    assert loaded.preprocessor.to_meta()["columns"][0]["periodic"] == {"frequencies": 8, "sigma": 0.5}
    new = pa.table({"lat": [39.0, 41.5, None, 49.99, 55.0], "size": [20.0, 10.0, 30.0, 5.0, 40.0]})
    want = result.model.predict_outputs(new)
    np.testing.assert_array_equal(loaded.predict_outputs(new), want)
    proto = to_onnx(loaded)
    assert {"MatMul", "Sin", "Cos", "Gather"} <= {n.op_type for n in proto.graph.node}
    # every initializer feeds a node: the frequencies go in as B, not also on their own (onnxruntime
    # warned of each unused one)
    used = {name for node in proto.graph.node for name in node.input}
    assert [t.name for t in proto.graph.initializer if t.name not in used] == []
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {
        "lat": np.array([np.nan if v is None else v for v in new.column("lat").to_pylist()], np.float32)[:, None],
        "size": np.array(new.column("size").to_pylist(), np.float32)[:, None],
    }
    (got,) = session.run(None, feeds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_periodic_fits_the_wavy_latitude_that_standardising_cannot(tmp_path):
    """The table of tests/data/test_ple.py: one hidden layer on a standardised lat misses the
    three periods (RMSE 1.94); the periodic embedding with the default keys follows them (0.29)."""
    _table(tmp_path / "t.csv")
    cfg = _config(tmp_path)
    p = prepare(cfg)
    assert p.preprocessor.periodic_embeddings == [(0, 16, 1.0, 16)]  # the documented defaults
    result = Trainer(cfg, p, tmp_path / "run").run()
    assert result.test["rmse"] < 0.5, result.test


def test_without_an_embedding_the_sines_and_cosines_go_to_the_hidden_layer(tmp_path):
    _table(tmp_path / "t.csv", n=300)
    cfg = _config(tmp_path, periodic_frequencies=3, periodic_embedding=None)
    p = prepare(cfg, dtype="float64")
    assert p.preprocessor.periodic_embeddings == [(0, 3, 1.0, None)] and p.preprocessor.encoded_width == 7
    report = check_config(cfg)
    assert report.ok, [c.to_dict() for c in report.failures]


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("periodic_sigma", 0, "config error at data.periodic_sigma: Input should be greater than 0 (got 0)"),
        ("periodic_sigma", -1.5, "config error at data.periodic_sigma: Input should be greater than 0 (got -1.5)"),
        (
            "periodic_frequencies",
            0,
            "config error at data.periodic_frequencies: Input should be greater than or equal to 1 (got 0)",
        ),
        (
            "periodic_embedding",
            0,
            "config error at data.periodic_embedding: Input should be greater than or equal to 1 (got 0)",
        ),
    ],
)
def test_bad_settings_are_one_line(tmp_path, key, value, message):
    assert one_line_error(_config, tmp_path, **{key: value}) == message


def test_module_options_and_stored_embeddings_are_checked():
    assert Periodic().options() == {"frequencies": 16, "sigma": 1.0}  # data.periodic_*'s defaults
    with pytest.raises(ValueError, match=r"^periodic option sigma must be a finite number > 0; got 0$"):
        Periodic(sigma=0)
    with pytest.raises(ValueError, match=r"^periodic option frequencies must be >= 1; got 0$"):
        Periodic(frequencies=0)
    with pytest.raises(TypeError, match=r"^periodic option frequencies must be an integer >= 1; got 2.5$"):
        Periodic(frequencies=2.5)
    good = {"name": "lat", "kind": "numeric", "categories": None, "fill": None}
    meta = {"columns": [good | {"periodic": {"frequencies": 4, "sigma": 0.5}, "dim": 3}], "missing": "error"}
    meta["handle_unknown"] = "error"
    pre = Preprocessor.from_meta(meta, np.zeros(1), np.ones(1))
    assert pre.periodic_embeddings == [(0, 4, 0.5, 3)]
    for bad in ({"frequencies": 0, "sigma": 0.5}, {"frequencies": 4, "sigma": -1.0}, {"frequencies": 4}):
        meta["columns"] = [good | {"periodic": bad}]
        with pytest.raises(ValueError, match="periodic embedding of 'lat'"):
            Preprocessor.from_meta(meta, np.zeros(1), np.ones(1))


def test_coordinate_columns_are_found_by_header_words_and_range():
    from mlpbp.data.columns import coordinate_columns

    t = pa.table(
        {
            "Latitude": [34.1, 37.7, 38.5],
            "Longitude": [-118.2, -122.4, -121.5],
            "pickup_lat": [40.7, 40.8, 40.6],
            "dropoffLng": [-74.0, -73.9, -74.1],
            "population": [10.0, 20.0, 30.0],
            "lat_error": [95.0, 10.0, 20.0],  # beyond ±90: not a latitude
            "lon_same": [5.0, 5.0, 5.0],  # one value: nothing to embed
            "lat_text": ["a", "b", "c"],
            "latency": [1.0, 2.0, 3.0],  # a word of its own, not "lat"
        }
    )
    names = t.column_names
    assert coordinate_columns(t, names) == ["Latitude", "Longitude", "pickup_lat", "dropoffLng"]
    # a latitude alone, or a "long" alone (a length, a position), is not a coordinate pair
    assert coordinate_columns(t, ["Latitude", "population"]) == []
    assert coordinate_columns(pa.table({"long": [1.0, 2.0], "size": [3.0, 4.0]}), ["long", "size"]) == []


def _places(path, n: int = 1500, seed: int = 0):
    """value = income + a bump 0.4° wide around a city centre + noise (sd 0.2), homes spread over
    6° by 6°: one slope per standardised coordinate cannot follow the bump."""
    rng = np.random.default_rng(seed)
    lat, lon, income = rng.uniform(33, 39, n), rng.uniform(-124, -118, n), rng.normal(3, 1, n)
    value = income + 2 * np.exp(-((lat - 36) ** 2 + (lon + 121) ** 2) / (2 * 0.4**2)) + rng.normal(0, 0.2, n)
    rows = [f"{a:.4f},{o:.4f},{i:.3f},{v:.4f}" for a, o, i, v in zip(lat, lon, income, value)]
    path.write_text("\n".join(["latitude,longitude,income,value", *rows]) + "\n")


def _places_config(tmp_path, **data):
    return config_from_dict(
        {"seed": 0, "data": {"path": "t.csv", "target": "value", **data}, "train": {"threads": 1}},
        base_dir=tmp_path,
        name="places",
    )


NOTE = (
    "columns 'latitude', 'longitude': coordinates (by header and range), given periodic embeddings"
    " (data.numeric: auto; name a column in data.numeric to choose another)"
)


def test_auto_gives_a_coordinate_pair_periodic_embeddings_and_says_so(tmp_path):
    _places(tmp_path / "t.csv", n=300)
    p = prepare(_places_config(tmp_path))
    assert NOTE in p.notes
    assert p.preprocessor.periodic_embeddings == [(0, 16, 1.0, 16), (1, 16, 1.0, 16)]  # data.periodic_*'s defaults
    assert [c.periodic is None for c in p.preprocessor.columns] == [False, False, True]
    # a column named in data.numeric keeps what it names; the other of the pair is still embedded
    p = prepare(_places_config(tmp_path, numeric={"latitude": "standardize"}))
    assert [c.periodic is None for c in p.preprocessor.columns] == [True, False, True]
    assert (
        "column 'longitude': coordinates (by header and range), given periodic embeddings"
        " (data.numeric: auto; name a column in data.numeric to choose another)"
    ) in p.notes
    # one transform for every column, or none of auto's choices: no embedding, no note
    for data in ({"numeric": "standardize"}, {"standardize": False}):
        p = prepare(_places_config(tmp_path, **data))
        assert p.preprocessor.periodic_embeddings == [] and not any("coordinates" in n for n in p.notes)


def test_the_default_follows_a_bump_around_a_place_that_standardised_coordinates_miss(tmp_path):
    _places(tmp_path / "t.csv")
    embedded = Trainer(_places_config(tmp_path), prepare(_places_config(tmp_path)), tmp_path / "a").run()
    plain = _places_config(tmp_path, numeric="standardize")
    standardised = Trainer(plain, prepare(plain), tmp_path / "b").run()
    # the noise's sd is 0.2: embedded, the default comes within 15% of it (0.204); standardised 0.263
    assert embedded.test["rmse"] < 0.23 and embedded.test["rmse"] < 0.85 * standardised.test["rmse"]
