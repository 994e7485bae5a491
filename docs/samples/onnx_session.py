import numpy as np
import onnxruntime as ort

session = ort.InferenceSession("runs/iris/model.onnx")  # written by `mlpbp export runs/iris/model.npz`
print("inputs ", [(i.name, i.type, i.shape) for i in session.get_inputs()])
print("outputs", [o.name for o in session.get_outputs()])
rows = {"sepal_length": [5.1, 6.7], "sepal_width": [3.5, 3.0], "petal_length": [1.4, 5.2], "petal_width": [0.2, 2.3]}
feeds = {name: np.array(values, np.float32).reshape(-1, 1) for name, values in rows.items()}  # one [N, 1] per column
label, probabilities = session.run(None, feeds)
print("label", label)
print("probabilities", probabilities)
