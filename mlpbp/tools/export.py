"""A trained model as one ONNX graph, preprocessing included, built with ``onnx.helper``.

Inputs: one tensor of shape [N, 1] per raw column, named as the column, so a deployment feeds
the columns it reads by name: float32 for numbers (dates: days since 1970-01-01; NaN for a
missing value when the model imputes), strings for categories. The graph fills missing values,
one-hot encodes categories, concatenates, standardises ((x − mean) / scale, the training
split's), runs every layer (Gemm, activation), and ends in

- classifiers: ``label`` (string [N], the class name) and, for cross-entropy networks,
  ``probabilities`` (float32 [N, classes], softmax, columns in the order of the classes);
- regressors: ``prediction`` (float32 [N, outputs], in the target's own units).

Weights are stored as float32 (a float64-trained model is rounded once). Opset ``OPSET``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlpbp.engine.activations import ACTIVATIONS, ELU_ALPHA, LEAKY_SLOPE
from mlpbp.errors import MlpbpError
from mlpbp.io import atomic_open
from mlpbp.run.model_file import TrainedModel, load_model

OPSET = 17
ML_OPSET = 3  # ai.onnx.ml, for OneHotEncoder on string columns
MISSING_CATEGORY = "missing"  # the category `data.missing: impute` files an empty cell under
IR_VERSION = 8  # the oldest IR that carries opset 17: runtimes from onnxruntime 1.11 on load it

# Each activation as ONNX nodes: (op type, attributes). identity needs none.
ACTIVATION_OPS = {
    "identity": None,
    "relu": ("Relu", {}),
    "leaky_relu": ("LeakyRelu", {"alpha": LEAKY_SLOPE}),
    "sigmoid": ("Sigmoid", {}),
    "tanh": ("Tanh", {}),
    "softplus": ("Softplus", {}),
    "elu": ("Elu", {"alpha": ELU_ALPHA}),
    "sin": ("Sin", {}),
}


def import_onnx():
    try:
        import onnx
    except ImportError:
        raise MlpbpError("ONNX export needs the onnx package: pip install 'mlpbp[onnx]'") from None
    return onnx


def to_onnx(model: TrainedModel, name: str = "mlpbp"):
    """The ONNX ModelProto of ``model`` (checked with onnx.checker)."""
    onnx = import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    net = model.net
    # by the function's own name, so an alias (logistic for sigmoid) exports as what it is
    fn_name = ACTIVATIONS[net.activation].name if net.activation in ACTIVATIONS else net.activation
    if fn_name not in ACTIVATION_OPS:
        raise MlpbpError(
            f"cannot export activation {net.activation!r} to ONNX (exportable: {', '.join(ACTIVATION_OPS)})"
        )
    f32 = np.float32
    inits, nodes = [], []

    def const(cname: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), cname))
        return cname

    inputs, encoded = _encode_inputs(model, const, nodes)
    nodes.append(helper.make_node("Concat", encoded, ["features"], axis=1, name="concat_features"))
    pre = model.x_scaler
    nodes.append(helper.make_node("Sub", ["features", const("x_mean", pre.mean.astype(f32))], ["x_centered"]))
    nodes.append(helper.make_node("Div", ["x_centered", const("x_scale", pre.scale.astype(f32))], ["h0"]))
    h = "h0"
    linears = net.linears
    act = ACTIVATION_OPS[fn_name]
    for r, layer in enumerate(linears, start=1):
        W = const(f"W{r}", layer.params["W"].astype(f32))  # (out, in): Gemm with transB
        b = const(f"b{r}", layer.params["b"].astype(f32))
        z = f"z{r}"
        nodes.append(helper.make_node("Gemm", [h, W, b], [z], transB=1, name=f"linear{r}"))
        h = z
        if r < len(linears) and act is not None:
            op, attrs = act
            nodes.append(helper.make_node(op, [z], [f"a{r}"], name=f"{net.activation}{r}", **attrs))
            h = f"a{r}"
    outputs = []
    if model.task == "classification":
        nodes.append(helper.make_node("ArgMax", [h], ["class_index"], axis=1, keepdims=0))
        classes = np.array(model.classes, dtype=object)
        labels = helper.make_tensor("classes", TensorProto.STRING, [len(classes)], [c.encode() for c in classes])
        inits.append(labels)
        nodes.append(helper.make_node("Gather", ["classes", "class_index"], ["label"], axis=0))
        outputs.append(helper.make_tensor_value_info("label", TensorProto.STRING, ["N"]))
        if net.loss_name == "cross_entropy":
            nodes.append(helper.make_node("Softmax", [h], ["probabilities"], axis=1))
            outputs.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", len(classes)]))
    else:
        if model.y_scaler is not None:  # back to the target's units
            nodes.append(helper.make_node("Mul", [h, const("y_scale", model.y_scaler.scale.astype(f32))], ["y_scaled"]))
            nodes.append(
                helper.make_node("Add", ["y_scaled", const("y_mean", model.y_scaler.mean.astype(f32))], ["prediction"])
            )
        else:
            nodes.append(helper.make_node("Identity", [h], ["prediction"]))
        outputs.append(helper.make_tensor_value_info("prediction", TensorProto.FLOAT, ["N", net.widths[-1]]))
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
        producer_name="mlpbp",
        doc_string=f"{model.task} MLP {'-'.join(map(str, net.widths))} ({net.activation}); inputs: one float32 "
        "[N, 1] tensor per feature column, named as the column",
    )
    proto.ir_version = IR_VERSION
    if model.target_name:
        helper.set_model_props(proto, {"target": model.target_name})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _columns(model: TrainedModel) -> list:
    """(name, kind, categories, fill, missing policy) of each raw input column. Models whose
    preprocessing is a plain standardisation have numeric columns only."""
    pre = model.x_scaler
    cols = getattr(pre, "columns", None)
    if cols is None:
        return [(n, "numeric", None, None, "error") for n in model.feature_names]
    return [(c.name, c.kind, c.categories, c.fill, getattr(pre, "missing", "error")) for c in cols]


def _encode_inputs(model: TrainedModel, const, nodes) -> tuple[list, list[str]]:
    """One graph input per raw column and the nodes that turn it into the network's columns:
    numbers (and dates, as days since 1970-01-01) with missing values (NaN) filled by the
    training median when the model imputes; categories one-hot (an unseen one: all zeros)."""
    from onnx import TensorProto, helper

    inputs, encoded = [], []
    names = [c[0] for c in _columns(model)]
    if len(set(names)) != len(names):
        raise MlpbpError("cannot export: feature names repeat, and ONNX inputs need distinct names")
    for j, (name, kind, categories, fill, missing) in enumerate(_columns(model)):
        if kind == "categorical":
            inputs.append(helper.make_tensor_value_info(name, TensorProto.STRING, ["N", 1]))
            # An empty cell is the "missing" category when the model imputes: one more word whose
            # column the matrix below adds into the "missing" one.
            impute = missing == "impute" and MISSING_CATEGORY in categories
            vocab = categories + ([""] if impute else [])
            nodes.append(
                helper.make_node(
                    "OneHotEncoder", [name], [f"c{j}_hot"], domain="ai.onnx.ml", cats_strings=vocab, zeros=1
                )
            )  # [N, 1, len(vocab)]; an unseen category: all zeros
            shape = const(f"c{j}_shape", np.array([-1, len(vocab)], np.int64))
            nodes.append(helper.make_node("Reshape", [f"c{j}_hot", shape], [f"c{j}_onehot"]))
            out = f"c{j}_onehot"
            if impute:
                fold = np.eye(len(vocab), len(categories), dtype=np.float32)
                fold[-1, categories.index(MISSING_CATEGORY)] = 1.0
                nodes.append(helper.make_node("MatMul", [out, const(f"c{j}_fold", fold)], [f"c{j}_folded"]))
                out = f"c{j}_folded"
            encoded.append(out)
        else:
            inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 1]))
            if fill is None:
                encoded.append(name)
                continue
            nodes.append(helper.make_node("IsNaN", [name], [f"c{j}_nan"]))
            fill_c = const(f"c{j}_fill", np.array([fill], np.float32))
            nodes.append(helper.make_node("Where", [f"c{j}_nan", fill_c, name], [f"c{j}_filled"]))
            encoded.append(f"c{j}_filled")
    return inputs, encoded


def export_onnx(model_path: str | Path, out_path: str | Path) -> dict:
    """Write ``model_path`` as ONNX to ``out_path`` (atomically); returns what it wrote."""
    model = load_model(model_path)
    proto = to_onnx(model, name=Path(model_path).parent.name or "mlpbp")
    data = proto.SerializeToString()
    with atomic_open(out_path, "wb") as f:
        f.write(data)
    return {
        "path": str(out_path),
        "bytes": len(data),
        "opset": OPSET,
        "inputs": [i.name for i in proto.graph.input],
        "outputs": [o.name for o in proto.graph.output],
    }
