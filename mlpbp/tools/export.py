"""A trained model as one ONNX graph, preprocessing included, built with ``onnx.helper``.

Inputs: one float32 tensor of shape [N, 1] per feature column, named as the column, so a
deployment feeds the columns it reads by name. The graph concatenates them, standardises
((x − mean) / scale, the training split's), runs every layer (Gemm, activation), and ends in

- classifiers: ``label`` (string [N], the class name) and, for cross-entropy networks,
  ``probabilities`` (float32 [N, classes], softmax, columns in the order of the classes);
- regressors: ``prediction`` (float32 [N, outputs], in the target's own units).

Weights are stored as float32 (a float64-trained model is rounded once). Opset ``OPSET``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlpbp.engine.activations import ELU_ALPHA, LEAKY_SLOPE
from mlpbp.errors import MlpbpError
from mlpbp.io import atomic_open
from mlpbp.run.model_file import TrainedModel, load_model

OPSET = 17
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
    if net.activation not in ACTIVATION_OPS:
        raise MlpbpError(
            f"cannot export activation {net.activation!r} to ONNX (exportable: {', '.join(ACTIVATION_OPS)})"
        )
    f32 = np.float32
    inits, nodes = [], []

    def const(cname: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), cname))
        return cname

    features = model.feature_names
    if len(set(features)) != len(features):
        raise MlpbpError("cannot export: feature names repeat, and ONNX inputs need distinct names")
    inputs = [helper.make_tensor_value_info(f, TensorProto.FLOAT, ["N", 1]) for f in features]
    x = "features"
    nodes.append(helper.make_node("Concat", features, [x], axis=1, name="concat_features"))
    nodes.append(helper.make_node("Sub", [x, const("x_mean", model.x_scaler.mean.astype(f32))], ["x_centered"]))
    nodes.append(helper.make_node("Div", ["x_centered", const("x_scale", model.x_scaler.scale.astype(f32))], ["h0"]))
    h = "h0"
    linears = net.linears
    act = ACTIVATION_OPS[net.activation]
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
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="mlpbp",
        doc_string=f"{model.task} MLP {'-'.join(map(str, net.widths))} ({net.activation}); inputs: one float32 "
        "[N, 1] tensor per feature column, named as the column",
    )
    proto.ir_version = IR_VERSION
    if model.target_name:
        helper.set_model_props(proto, {"target": model.target_name})
    onnx.checker.check_model(proto, full_check=True)
    return proto


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
