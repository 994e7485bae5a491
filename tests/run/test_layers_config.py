"""model.layers, model.dropout and model.norm from YAML: what they train, what they refuse (one
line, exit 2, nothing written), and that a run with dropout and batch_norm resumes bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from helpers import InterruptAt
from mlpbp.cli import app
from mlpbp.cli.app import sigint_requests_stop
from mlpbp.engine.graph import Network
from mlpbp.errors import Interrupted
from mlpbp.run.config import config_from_dict
from mlpbp.run.model_file import load_model
from mlpbp.run.prepare import prepare
from mlpbp.run.trainer import Trainer, TrainHooks


def _train(runner, tmp_path, model, train=None, name="c"):
    cfg = {
        "seed": 0,
        "data": {"dataset": "moons", "n_samples": 120},
        "model": model,
        "train": {"epochs": 3, "batch_size": 16, **(train or {})},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / f"{name}-run"
    return runner.invoke(app, ["train", str(path), "--out", str(out), "-q"]), out


LAYERS = [
    {"linear": 128},
    "layer_norm",
    "relu",
    {"residual": ["batch_norm", {"linear": 128}, "relu", {"dropout": 0.1}, {"linear": 64}]},
]


@pytest.mark.parametrize(
    "model, train, message",
    [
        (
            {"layers": LAYERS},
            None,
            "model.layers[3] (residual) maps 128 → 64; its last module must give 128",
        ),
        ({"layers": [{"linaer": 8}]}, None, "model.layers[0]: unknown module 'linaer'; did you mean 'linear'?"),
        ({"layers": [{"linear": 8}, {"tanh": 3}]}, None, "model.layers[1] (tanh): takes no options; write it as"),
        ({"layers": [{"layer_norm": 3}]}, None, "(layer_norm): takes no single value; give its options as a mapping"),
        (
            {"layers": [{"dropout": 1.0}]},
            None,
            "model.layers[0] (dropout): dropout option p must be in [0, 1); got 1.0",
        ),
        ({"layers": [{"linear": 8}], "hidden": [4]}, None, "give model.layers or model.hidden, not both"),
        ({"layers": [{"batch_norm": {"momentum": "fast"}}]}, None, "batch_norm option momentum must be a number"),
        ({"layers": [{"linear": {"width": 8, "bias": 1}}]}, None, "linear option bias must be true or false"),
        ({"layers": [{"linear": 8}, "batch_norm"]}, {"batch_size": 1}, "batch_norm in training needs at least 2 rows"),
        ({"hidden": [8], "dropout": 1.5}, None, "model.dropout"),
        (  # 84 training rows: the last batch of each epoch would hold one row
            {"hidden": [8], "norm": "batch"},
            {"batch_size": 83},
            "batch_norm in training needs at least 2 rows per batch, and 84 training rows in batches of 83 leave"
            " one row in the last batch of each epoch",
        ),
    ],
)
def test_bad_layers_are_one_line_exit_2_and_nothing_written(runner, tmp_path, model, train, message):
    res, out = _train(runner, tmp_path, model, train)
    assert res.exit_code == 2, res.output
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not out.exists() or not any(out.iterdir())


def test_shorthand_dropout_and_norm_build_the_modules_listed(runner, tmp_path):
    res, out = _train(runner, tmp_path, {"hidden": [8, 6], "activation": "tanh", "dropout": 0.1, "norm": "batch"})
    assert res.exit_code == 0, res.output
    net = load_model(out / "model.npz").net
    kinds = [m.kind for m in net.layers]
    assert kinds == ["linear", "batch_norm", "tanh", "dropout"] * 2 + ["linear"]
    assert set(net.buffers) == {"running_mean1", "running_var1", "running_mean2", "running_var2"}
    assert not net.training  # a loaded model predicts in evaluation mode


def test_a_residual_network_trains_saves_and_predicts_as_it_was_trained(runner, tmp_path):
    layers = [{"linear": 16}, {"residual": ["batch_norm", {"linear": 16}, "relu", {"dropout": 0.1}, {"linear": 16}]}]
    res, out = _train(runner, tmp_path, {"layers": layers}, {"optimizer": "adamw", "epochs": 30, "learning_rate": 0.01})
    assert res.exit_code == 0, res.output
    model = load_model(out / "model.npz")
    assert isinstance(model.net, Network) and model.metrics["accuracy"] >= 0.85
    # the file's graph, weights and running statistics give the same outputs as a rebuilt network
    again = Network.from_layers(layers, 2, 2, loss="cross_entropy")
    again.set_flat(model.net.get_flat())
    for k, b in model.net.buffers.items():
        again.buffers[k][...] = b
    X = np.random.default_rng(0).normal(size=(9, 2)).astype(np.float32)
    np.testing.assert_allclose(again.eval().forward(X), model.net.forward(X), rtol=1e-5, atol=1e-5)  # float32 model


def test_a_run_with_dropout_and_batch_norm_resumes_bit_for_bit(tmp_path):
    # interrupted mid-epoch twice: the masks drawn after each resume are the ones drawn without
    cfg = config_from_dict(
        {
            "seed": 0,
            "data": {"dataset": "moons", "n_samples": 300},
            "model": {"hidden": [8], "dropout": 0.3, "norm": "batch"},
            "train": {"epochs": 4, "batch_size": 8},
        }
    )
    Trainer(cfg, prepare(cfg), tmp_path / "ref").run()
    out = tmp_path / "out"
    for i, (epoch, step) in enumerate([(1, 12), (3, 5)]):
        trainer = Trainer(cfg, prepare(cfg), out, hooks=InterruptAt(epoch, step))
        with sigint_requests_stop(trainer.stop), pytest.raises(Interrupted):
            trainer.run(resume=i > 0)
    Trainer(cfg, prepare(cfg), out).run(resume=True)
    a, b = (np.load(p / "model.npz") for p in (tmp_path / "ref", out))
    keys = [k for k in a.files if k.startswith(("param.", "buffer."))]
    assert any(k.startswith("buffer.") for k in keys)
    for k in keys:
        assert np.array_equal(a[k], b[k]), k
    assert (tmp_path / "ref" / "history.csv").read_bytes() == (out / "history.csv").read_bytes()


def test_predict_and_evaluate_say_they_ran_in_eval_mode(runner, tmp_path):
    import json

    res, out = _train(runner, tmp_path, {"hidden": [8], "dropout": 0.2, "norm": "batch"})
    assert res.exit_code == 0, res.output
    plain_res, plain = _train(runner, tmp_path, {"hidden": [8], "norm": "layer"}, name="plain")
    assert plain_res.exit_code == 0, plain_res.output
    rows = tmp_path / "rows.csv"
    rng = np.random.default_rng(0)
    rows.write_text("x0,x1,y\n" + "".join(f"{a},{b},{int(a > 0)}\n" for a, b in rng.normal(size=(20, 2))))
    line = "evaluation mode: batch_norm's running statistics, dropout off"  # in listing order
    pred = runner.invoke(app, ["predict", str(out / "model.npz"), str(rows)])
    assert pred.exit_code == 0, pred.output
    assert f"note: predicting in {line}" in pred.stderr
    assert pred.stdout.splitlines()[0] == "prediction,p_0,p_1" and len(pred.stdout.splitlines()) == 21  # CSV alone
    ev = runner.invoke(app, ["evaluate", str(out / "model.npz"), str(rows)])
    assert ev.exit_code == 0, ev.output
    assert ev.stdout.splitlines()[1] == f"scored in {line}"
    as_json = runner.invoke(app, ["evaluate", str(out / "model.npz"), str(rows), "--json"])
    assert json.loads(as_json.stdout)["mode"] == "eval"
    # layer_norm computes the same in both modes: nothing to say
    pred = runner.invoke(app, ["predict", str(plain / "model.npz"), str(rows)])
    ev = runner.invoke(app, ["evaluate", str(plain / "model.npz"), str(rows)])
    assert "evaluation mode" not in pred.stderr + ev.stdout


def test_early_stopping_restores_the_best_epochs_running_statistics_too(tmp_path):
    from mlpbp.run.checkpoint import load_checkpoint
    from mlpbp.run.metrics import compute_metrics

    cfg = config_from_dict(
        {
            "seed": 0,
            "data": {"dataset": "moons", "n_samples": 200, "validation_fraction": 0.3},
            "model": {"hidden": [16], "norm": "batch"},
            "train": {"epochs": 60, "batch_size": 8, "learning_rate": 0.5, "momentum": 0.9, "patience": 3},
        }
    )
    seen = []

    class Watch(TrainHooks):
        def epoch_end(self, record):
            seen.append({k: b.copy() for k, b in trainer.net.buffers.items()})

    data = prepare(cfg)
    trainer = Trainer(cfg, data, tmp_path, hooks=Watch())
    result = trainer.run()
    assert result.stopped_early and result.best_epoch < len(result.history)
    best = result.best_epoch - 1
    net = trainer.net
    for k, b in net.buffers.items():
        np.testing.assert_array_equal(b, seen[best][k])
    assert not np.array_equal(seen[-1]["running_mean1"], net.buffers["running_mean1"])
    # the kept model scores the best validation loss again, exactly
    best_val = result.history[best]["val_loss"]
    assert (
        compute_metrics(net, *data.val, data.y_scaler)["loss"] == best_val == min(r["val_loss"] for r in result.history)
    )
    # the best weights with the last epoch's statistics would not
    for k, b in net.buffers.items():
        b[...] = seen[-1][k]
    assert compute_metrics(net, *data.val, data.y_scaler)["loss"] != best_val
    # the saved model and the checkpoint keep them too
    saved = load_model(tmp_path / "model.npz").net
    for k, b in saved.buffers.items():
        np.testing.assert_allclose(b, seen[best][k], rtol=1e-7)
    _, kept = load_checkpoint(tmp_path / "checkpoint.npz", net.params, trainer.opt.state_dict(), net.buffers)
    for k in net.buffers:
        np.testing.assert_array_equal(kept[f"buffer.{k}"], seen[best][k])


def test_a_checkpoint_from_before_best_buffers_still_loads_its_best_weights(tmp_path):
    from mlpbp.run.checkpoint import TrainState, load_checkpoint, save_checkpoint

    net = Network.from_layers([{"linear": 4}, "batch_norm", "relu"], 2, 2)
    best = {k: p + 1 for k, p in net.params.items()}  # best weights, no best.buffer.* (as written before)
    save_checkpoint(tmp_path / "c.npz", TrainState(rng_state=np.random.PCG64(0).state), net.params, {}, best)
    _, kept = load_checkpoint(tmp_path / "c.npz", net.params, {}, net.buffers)
    assert set(kept) == set(net.params) and all(np.array_equal(kept[k], best[k]) for k in best)
    # and one that keeps them gives them back under buffer.{name}
    best |= {f"buffer.{k}": b + 2 for k, b in net.buffers.items()}
    save_checkpoint(tmp_path / "d.npz", TrainState(rng_state=np.random.PCG64(0).state), net.params, {}, best)
    _, kept = load_checkpoint(tmp_path / "d.npz", net.params, {}, net.buffers)
    assert np.array_equal(kept["buffer.running_var1"], net.buffers["running_var1"] + 2)


def _with_graph_nodes(src, dst, edit) -> None:
    """Copy the model file ``src`` to ``dst`` with ``edit`` applied to its graph's node list."""
    import json

    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    edit(meta["graph"]["nodes"])
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(dst, **arrays)


@pytest.mark.parametrize(
    "edit, message",
    [
        # a parameter-free last node narrowing the output: it would predict over 2 of 3 classes
        (
            lambda nodes: nodes.append({"module": "select", "options": {"columns": [0, 1]}, "inputs": [len(nodes)]}),
            "invalid model file: its graph of modules maps 4 inputs to 2 outputs, but widths [4, 8, 3] say 4 to 3",
        ),
        (
            lambda nodes: nodes[1].update(inputs=[5]),
            "(its graph of modules does not build: graph node 2 (tanh): reads value 5; allowed: 0 (the input) to 1",
        ),
    ],
)
def test_a_model_file_whose_graph_does_not_give_its_widths_is_one_line(runner, tmp_path, edit, message):
    cfg = {
        "seed": 0,
        "data": {"dataset": "iris", "target": "species"},
        "model": {"layers": [{"linear": 8}, "tanh"]},
        "train": {"epochs": 1},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = runner.invoke(app, ["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "-q"])
    assert res.exit_code == 0, res.output
    _with_graph_nodes(tmp_path / "run" / "model.npz", tmp_path / "bad.npz", edit)
    res = runner.invoke(app, ["inspect", str(tmp_path / "bad.npz")])
    assert res.exit_code == 2 and message in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "model, init, shape",
    [
        # model.activation's default (relu) is model.hidden's: it must not make a tanh list He-initialised
        ({"layers": [{"linear": 8}, "tanh"]}, "glorot", "2-8-2 tanh network"),
        ({"layers": [{"linear": 8}, "relu", {"linear": 8}, "tanh"]}, "he", "2-8-8-2 relu network"),
        ({"layers": [{"linear": 8}]}, "glorot", "2-8-2 identity network"),
        # set in the config, it still chooses the init
        ({"layers": [{"linear": 8}, "tanh"], "activation": "relu"}, "he", "2-8-2 relu network"),
    ],
)
def test_a_layer_list_is_initialised_and_named_by_its_own_activations(runner, tmp_path, model, init, shape):
    res, out = _train(runner, tmp_path, model, {"epochs": 1})
    assert res.exit_code == 0, res.output
    saved = load_model(out / "model.npz")
    assert (saved.net.init, saved.net.shape) == (init, shape)
    assert saved.config["model"]["activation"] == saved.net.activation  # the saved config trains the same
