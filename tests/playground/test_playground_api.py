"""The playground server through Starlette's test client: every route and message, bad input
answered with one clear error while the server keeps serving, and what the page is sent checked
against independent references (PyTorch autograd for one example's passes, `mlpbp train` on the
downloaded YAML, the saved model's predictions)."""

from __future__ import annotations

import base64
import io
import json
import time

import numpy as np
import pytest
import yaml

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from mlpbp.playground.app import create_app  # noqa: E402
from mlpbp.playground.session import Limits  # noqa: E402
from mlpbp.run.config import config_from_dict  # noqa: E402
from mlpbp.run.model_file import load_model  # noqa: E402
from mlpbp.run.trainer import train  # noqa: E402

SMALL = {"dataset": "circles", "points": 120, "hidden": [6, 5], "batch_size": 8, "seed": 3}


@pytest.fixture
def client():
    with TestClient(create_app(Limits(max_sessions=4))) as c:
        yield c


def receive(ws, kind: str, limit: int = 200) -> dict:
    """The next message of type ``kind`` (frames of a running session may come between)."""
    for _ in range(limit):
        msg = ws.receive_json()
        if msg["type"] == kind:
            return msg
        assert msg["type"] != "error" or kind == "error", msg["message"]
    raise AssertionError(f"no {kind} message in {limit}")


def opened(ws) -> tuple[dict, dict, dict]:
    return receive(ws, "hello"), receive(ws, "state"), receive(ws, "frame")


def configure(ws, **settings) -> tuple[dict, dict]:
    ws.send_json({"type": "configure", "settings": settings})
    return receive(ws, "state"), receive(ws, "frame")


def test_page_and_assets_ship_in_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for ref in ('src="/static/app.js"', 'href="/static/style.css"'):
        assert ref in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN: works offline
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert "WebSocket" in client.get("/static/app.js").text
    assert client.get("/static/style.css").status_code == 200
    r = client.get("/static/index.html")
    assert r.status_code == 404 and "no asset 'index.html'" in r.json()["error"]
    for bad in ("/static/..%2Fsession.py", "/static/%2Fetc%2Fpasswd", "/static/../session.py"):
        r = client.get(bad)
        assert r.status_code == 404 and "import" not in r.text and "root:" not in r.text, bad


def test_hello_state_and_frame_on_connect(client):
    with client.websocket_connect("/ws") as ws:
        hello, state, frame = opened(ws)
        assert hello["limits"]["max_width"] == 64 and hello["limits"]["max_sessions"] == 4
        assert {"spirals", "xor", "circles", "gaussians", "regression", "upload"} <= set(hello["options"]["datasets"])
        assert "tanh" in hello["options"]["activations"] and "lbfgs" not in hello["options"]["optimizers"]
        assert state["widths"] == [2, 8, 8, 2] and len(state["train"]) + len(state["test"]) == 500
        assert len(state["test"]) == 100  # test_fraction 0.2
        assert frame["step"] == 0 and frame["train"] > 0 and len(frame["grad_norms"]) == 3
        assert len(frame["units"]) == 16  # every hidden unit's picture
        assert len(base64.b64decode(frame["output"]["data"])) == state["grid"] ** 2
        assert hello["session"] in client.app.state.sessions
    assert hello["session"] not in client.app.state.sessions  # ended with the tab


def test_step_run_pause_reset(client):
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        _, first = configure(ws, **SMALL)
        ws.send_json({"type": "step"})
        one = receive(ws, "frame")
        assert one["step"] == 1 and one["train"] != first["train"]
        ws.send_json({"type": "step", "steps": 14})
        assert receive(ws, "frame")["step"] == 15 == 1 + 14
        ws.send_json({"type": "run"})
        steps = [receive(ws, "frame")["step"] for _ in range(5)]
        assert steps == sorted(steps) and steps[0] > 15 and len(set(steps)) == 5
        ws.send_json({"type": "pause"})
        paused = receive(ws, "paused")["step"]
        ws.send_json({"type": "ping", "id": 7})
        assert receive(ws, "pong")["id"] == 7
        ws.send_json({"type": "step"})
        assert receive(ws, "frame")["step"] == paused + 1  # no run left going on behind the pause
        ws.send_json({"type": "reset"})
        receive(ws, "state")
        again = receive(ws, "frame")
        assert again["step"] == 0 and again["train"] == first["train"]  # the same seed, the same start


def test_training_lowers_the_loss_and_measures_sharpness(client):
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        _, start = configure(ws, **SMALL, sharpness_every=20, learning_rate=0.05)
        ws.send_json({"type": "step", "steps": 200})
        end = receive(ws, "frame")
        assert end["train"] < 0.5 * start["train"]
        assert end["accuracy"]["train"] > 0.9
        assert end["sharpness"]["step"] == 200 and end["sharpness"]["top"] > 0
        assert end["sharpness"]["limit"] == pytest.approx(2 / 0.05)
        assert end["epoch_loss"]["epoch"] == 200 // 12


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"hidden": [10**6]}, ["hidden", "width 1000000", "1 .. 64"]),
        ({"hidden": "8, x"}, ["hidden", "'8, x'"]),
        ({"hidden": [4] * 9}, ["9 hidden layers", "at most 6"]),
        ({"activation": "swishy"}, ["unknown activation 'swishy'", "tanh"]),
        ({"optimizer": "lbfgs"}, ["optimizer", "sgd"]),
        ({"points": 10**7}, ["points", "2000"]),
        ({"learning_rate": -1}, ["learning_rate", "-1"]),
        ({"batch_size": 2.5}, ["batch_size", "not an integer"]),
        ({"dataset": "upload"}, ["choose a CSV file"]),
        ({"dataset": "../../etc/passwd"}, ["unknown dataset"]),
        ({"colour": "red"}, ["unknown setting 'colour'"]),
        ({"dataset": "regression", "loss": "cross_entropy"}, ["model.loss", "use square"]),
    ],
)
def test_bad_settings_are_one_error_and_the_session_keeps_its_run(client, settings, words):
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        state, _ = configure(ws, **SMALL)
        ws.send_json({"type": "configure", "settings": settings})
        msg = receive(ws, "error")
        assert "\n" not in msg["message"] and all(w in msg["message"] for w in words), msg["message"]
        ws.send_json({"type": "step"})
        assert receive(ws, "frame")["step"] == 1
        ws.send_json({"type": "reset"})
        assert receive(ws, "state")["widths"] == state["widths"]  # the previous settings stand
    with client.websocket_connect("/ws") as ws:  # and the server serves the next tab
        assert opened(ws)[1]["widths"] == [2, 8, 8, 2]


@pytest.mark.parametrize(
    ("send", "words"),
    [
        ("not json {", ["not JSON"]),
        (json.dumps({"type": "fly"}), ["unknown message type 'fly'", "configure"]),
        (json.dumps([1, 2]), ["unknown message type None"]),
        (json.dumps({"type": "step", "steps": 10**6}), ["steps 1000000", "1 .. 200"]),
        (json.dumps({"type": "example", "index": 99999}), ["index 99999"]),
        (json.dumps({"type": "example", "part": "val", "index": 0}), ["part 'val'"]),
        (json.dumps({"type": "configure", "settings": "x"}), ["settings must be an object"]),
    ],
)
def test_bad_messages(client, send, words):
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        ws.send_text(send)
        msg = receive(ws, "error")
        assert all(w in msg["message"] for w in words), msg["message"]
        ws.send_bytes(b"\x00\x01")
        assert "JSON text" in receive(ws, "error")["message"]
        ws.send_json({"type": "ping", "id": 2})
        assert receive(ws, "pong")["id"] == 2


def test_one_example_matches_pytorch_autograd(client):
    torch = pytest.importorskip("torch")
    with client.websocket_connect("/ws") as ws:
        hello, _, _ = opened(ws)
        state, _ = configure(ws, **SMALL, activation="tanh")
        ws.send_json({"type": "step", "steps": 30})
        receive(ws, "frame")
        ws.send_json({"type": "example", "part": "test", "index": 4})
        ex = receive(ws, "example")
        net = client.app.state.sessions[hello["session"]].session.net
    x = torch.tensor([state["test"][4][:2]], dtype=torch.float64)
    y = int(state["test"][4][2])
    assert ex["target"] == y and ex["x"] == pytest.approx(x[0].tolist(), abs=0)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in net.params.items()}
    a, zs, acts = x, [], []
    for r in (1, 2, 3):
        z = a @ params[f"W{r}"].T + params[f"b{r}"]
        z.retain_grad()
        zs.append(z)
        a = torch.tanh(z) if r < 3 else z
        if r < 3:
            a.retain_grad()
            acts.append(a)
    J = torch.nn.functional.cross_entropy(a, torch.tensor([y]))
    J.backward()
    assert ex["loss"] == pytest.approx(J.item(), rel=1e-12)
    for r, layer in enumerate(ex["layers"], start=1):
        assert layer["W_shape"] == list(net.params[f"W{r}"].shape)
        np.testing.assert_allclose(layer["z"], zs[r - 1][0].detach(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layer["dz"], zs[r - 1].grad[0], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(layer["dW"], params[f"W{r}"].grad, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(layer["db"], params[f"b{r}"].grad, rtol=1e-10, atol=1e-14)
        if r < 3:
            np.testing.assert_allclose(layer["a"], acts[r - 1][0].detach(), rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(layer["da"], acts[r - 1].grad[0], rtol=1e-10, atol=1e-14)
    assert ex["engine_max_abs_diff"] < 1e-14


def test_gradcheck_reports_every_parameter(client):
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        configure(ws, **SMALL)
        ws.send_json({"type": "gradcheck"})
        g = receive(ws, "gradcheck")
    params = {c["param"]: c for c in g["checks"] if c["kind"] == "param"}
    assert set(params) == {"W1", "b1", "W2", "b2", "W3", "b3"}
    assert g["ok"] and all(c["max_rel_err"] < 1e-6 and c["status"] == "pass" for c in params.values())
    assert {c["kind"] for c in g["checks"]} >= {"param", "input", "hvp"}


def test_downloaded_yaml_trains_to_the_same_loss_and_the_model_file_predicts(client, tmp_path):
    with client.websocket_connect("/ws") as ws:
        hello, _, _ = opened(ws)
        sid = hello["session"]
        configure(ws, **SMALL, optimizer="sgd", momentum=0.5, learning_rate=0.2, weight_decay=0.001)
        ws.send_json({"type": "step", "steps": 40})  # 3 epochs of 12 steps and 4 steps into the 4th
        frame = receive(ws, "frame")
        text = client.get(f"/session/{sid}/config.yaml")
        model = client.get(f"/session/{sid}/model.npz")
        net = client.app.state.sessions[sid].session.net
        X = np.array([p[:2] for p in receive_state(ws)["train"]])
    assert text.headers["content-disposition"] == 'attachment; filename="playground.yaml"'
    cfg = yaml.safe_load(text.text)
    assert cfg["train"]["epochs"] == 3 == frame["epoch_loss"]["epoch"]
    result = train(config_from_dict(cfg, base_dir=tmp_path), out_dir=tmp_path / "run")
    assert result.history[-1]["train_loss"] == frame["epoch_loss"]["train_loss"]  # same seed, same loss
    path = tmp_path / "model.npz"
    path.write_bytes(model.content)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.net.widths, net.widths)
    for k, p in net.params.items():
        np.testing.assert_array_equal(loaded.net.params[k], p)
    np.testing.assert_array_equal(loaded.net.predict(X), net.predict(X))


def receive_state(ws) -> dict:
    ws.send_json({"type": "reset"})
    return receive(ws, "state")


CSV = "x0,x1,label\n" + "".join(f"{i % 7},{(i * 3) % 11},{'yes' if (i % 7) > 3 else 'no'}\n" for i in range(80))


def test_upload_a_csv(client, tmp_path):
    with client.websocket_connect("/ws") as ws:
        hello, _, _ = opened(ws)
        sid = hello["session"]
        r = client.post(f"/session/{sid}/upload?name=my%20points.csv", content=CSV.encode())
        assert r.status_code == 200 and r.json()["upload"] == "my_points.csv"
        state = receive(ws, "state")
        assert state["settings"]["dataset"] == "upload" and state["classes"] == ["no", "yes"]
        assert len(state["train"]) + len(state["test"]) == 80
        ws.send_json({"type": "step", "steps": 30})
        receive(ws, "frame")
        text = client.get(f"/session/{sid}/config.yaml").text
    assert "keep my_points.csv beside this file" in text
    cfg = yaml.safe_load(text)
    assert cfg["data"]["path"] == "my_points.csv" and "/" not in text.split("output")[0].split("path:")[1]
    (tmp_path / "my_points.csv").write_text(CSV)
    train(config_from_dict(cfg, base_dir=tmp_path), out_dir=tmp_path / "run")


@pytest.mark.parametrize(
    ("name", "body", "status", "words"),
    [
        ("bad.csv", b'x0,x1,y\n1,2,0\n3,4\n5,"6,1\n', 400, ["bad.csv", "row"]),
        ("wide.csv", b"a,b,c,y\n" + b"1,2,3,0\n4,5,6,1\n" * 20, 400, ["wide.csv", "3 input columns", "1 or 2"]),
        ("notes.pdf", b"%PDF", 400, ["notes.pdf", "not a .csv"]),
        ("big.csv", b"x,y\n" + b"1,0\n" * 300_000, 413, ["1,000,000"]),
        ("empty.csv", b"", 400, ["empty.csv"]),
    ],
)
def test_bad_uploads_are_one_line_in_the_page(client, name, body, status, words):
    with client.websocket_connect("/ws") as ws:
        hello, state, _ = opened(ws)
        r = client.post(f"/session/{hello['session']}/upload?name={name}", content=body)
        assert r.status_code == status
        message = r.json()["error"]
        assert "\n" not in message and all(w in message for w in words), message
        assert "/tmp" not in message and "mlpbp-playground" not in message  # no server path shown
        ws.send_json({"type": "reset"})
        assert receive(ws, "state")["settings"]["dataset"] == state["settings"]["dataset"]


def test_unknown_session(client):
    for method, url in (
        ("get", "/session/nope/config.yaml"),
        ("get", "/session/nope/model.npz"),
        ("post", "/session/nope/upload?name=a.csv"),
    ):
        r = getattr(client, method)(url)
        assert r.status_code == 404 and "no session 'nope'" in r.json()["error"] and "reload" in r.json()["error"]
    with client.websocket_connect("/ws") as ws:
        hello, _, _ = opened(ws)
        r = client.get(f"/session/{hello['session']}/secrets.txt")
        assert r.status_code == 404 and "no download 'secrets.txt'" in r.json()["error"]
    assert client.get("/").status_code == 200


def test_session_cap_and_idle_timeout():
    with TestClient(create_app(Limits(max_sessions=1, idle_timeout_s=1.0))) as client:
        with client.websocket_connect("/ws") as first:
            opened(first)
            with client.websocket_connect("/ws") as second:
                msg = second.receive_json()
                assert msg["type"] == "closed" and "maximum of 1 sessions" in msg["reason"]
            started = time.monotonic()
            msg = receive(first, "closed")
            assert "idle for 1 s" in msg["reason"] and time.monotonic() - started < 30
        assert client.app.state.sessions == {}
        with client.websocket_connect("/ws") as again:  # the slot is free again
            opened(again)


def test_another_sites_page_cannot_connect(client):
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as info:
        with client.websocket_connect("/ws", headers={"origin": "http://evil.example"}) as ws:
            ws.receive_json()
    assert info.value.code == 1008
    with client.websocket_connect("/ws", headers={"origin": "http://testserver"}) as ws:
        opened(ws)


def test_regression_and_every_data_set(client):
    with client.websocket_connect("/ws") as ws:
        hello, _, _ = opened(ws)
        for name in hello["options"]["datasets"]:
            if name == "upload":
                continue
            loss = "square" if name == "regression" else "cross_entropy"
            state, frame = configure(ws, dataset=name, loss=loss, points=200)
            assert len(state["train"]) + len(state["test"]) == 200, name
            assert state["inputs"] == (1 if name == "regression" else 2)
        state, frame = configure(ws, dataset="regression", loss="square", points=200)
        assert state["task"] == "regression" and len(frame["output"]["values"]) == 200
        ws.send_json({"type": "step", "steps": 100})
        assert receive(ws, "frame")["train"] < frame["train"]


def test_model_file_round_trips_through_io(client):
    with client.websocket_connect("/ws") as ws:
        hello, _, _ = opened(ws)
        data = client.get(f"/session/{hello['session']}/model.npz").content
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        assert "param.W1" in z.files
