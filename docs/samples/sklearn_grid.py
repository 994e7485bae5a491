import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlpbp.sklearn import MLPClassifier

warnings.filterwarnings("ignore", category=ConvergenceWarning)  # 50 epochs: short on purpose
X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), max_iter=50, random_state=0))
print("test accuracy", round(clf.fit(X_train, y_train).score(X_test, y_test), 4))
grid = GridSearchCV(
    clf,
    {"mlpclassifier__hidden_layer_sizes": [(32,), (64,)], "mlpclassifier__learning_rate_init": [0.01, 0.05]},
    n_jobs=2,
)
grid.fit(X_train, y_train)
print("best", grid.best_params_, "cross-validated accuracy", round(grid.best_score_, 4))
