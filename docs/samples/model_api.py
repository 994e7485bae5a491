from mlpbp.data import read_table
from mlpbp.run.model_file import load_model

model = load_model("runs/iris/model.npz")  # written by `mlpbp train configs/iris.yaml`
table = read_table("datasets/iris.csv").table
outputs, has_prediction = model.predict_rows(table)  # NaN and False where a row cannot be scored
print(outputs.shape, has_prediction.all())
evaluation = model.evaluation(table)  # what `mlpbp evaluate` prints, as data
print(evaluation.rows, "rows scored, accuracy", round(evaluation.metrics["accuracy"], 4))
