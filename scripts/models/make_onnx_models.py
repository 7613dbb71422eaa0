#!/usr/bin/env python3
"""Small scikit-learn models exported to ONNX, for the scorer's ONNX loading (scorer::explain).

    python3 scripts/models/make_onnx_models.py      # from anywhere; run with any Python 3.11

Builds (or reuses) a venv at ${STREAMWATCH_CACHE:-$HOME/.cache/streamwatch}/onnx-venv from
scripts/models/requirements.txt (rebuilt when that file changes), re-runs itself inside it, and writes
under models/onnx/:

- trip-duration-linreg.onnx: LinearRegression of duration_min on the course's six features, fitted on
  the first 30,000 kept rows of data/green_tripdata_2022-01.parquet (the filter and null rule of
  `scorer train`: 0 <= duration_min <= 60, 0 < passenger_count <= 8, null features -> 0), so its
  coefficients are close to models/trip-duration-linear.json. ONNX op: ai.onnx.ml LinearRegressor.
- trip-over-15min-logreg.onnx: LogisticRegression (lbfgs, C=1, deterministic) of duration_min > 15 on
  the same rows and features, exported with zipmap=False (probabilities as a float tensor [N, 2]).
  ONNX op: ai.onnx.ml LinearClassifier (coefficients [-w, w], intercepts [-b, b], post_transform
  LOGISTIC: probabilities [sigmoid(-z), sigmoid(z)]).
- trip-duration-tree.onnx: a depth-2 DecisionTreeRegressor (TreeEnsembleRegressor), a non-linear model
  that the loader must refuse.
- trip-duration-scaled-linreg.onnx: make_pipeline(StandardScaler(), LinearRegression()) (Scaler, then
  LinearRegressor): linear in the raw features, but its LinearRegressor coefficients are on scaled
  features, so the loader must refuse it too.
- three hand-edited variants (onnx.helper): trip-over-15min-logreg-softmax.onnx (post_transform
  SOFTMAX), trip-over-15min-logreg-1row.onnx (one weight row (w, b), LOGISTIC), both with onnxruntime's
  outputs in expected.json, and trip-duration-linreg-truncated.onnx (Cast to int64 and back after the
  LinearRegressor), which only running the graph can tell from a linear model.
- expected.json: per model the scikit-learn coefficients and intercept (float64 and as the float32 the
  ONNX file stores), and 20 rows (16 kept rows after the training rows, 4 rows with null features),
  each with x (float32-rounded values as float64, null for missing), scikit-learn's prediction on
  fillna(0) (regression: predict; classifier: decision_function and predict_proba[:, 1]) and
  onnxruntime's output.

All inputs are float32 tensors [N, 6] named "input" (skl2onnx FloatTensorType).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "scripts/models/requirements.txt"
VENV = Path(os.environ.get("STREAMWATCH_CACHE", Path.home() / ".cache/streamwatch")) / "onnx-venv"
DATA = "data/green_tripdata_2022-01.parquet"
OUT = ROOT / "models/onnx"
FEATURES = [
    "passenger_count",
    "trip_distance",
    "fare_amount",
    "total_amount",
    "PULocationID",
    "DOLocationID",
]
TRAIN_ROWS = 30_000
THRESHOLD_MIN = 15.0
KEPT_ROWS_IN_EXPECTED = 16
NULL_ROWS_IN_EXPECTED = 4


def ensure_venv() -> None:
    """Re-executes this script inside the pinned venv, building it first when needed."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = VENV / ".requirements.sha256"
    python = VENV / "bin/python"
    if not python.exists() or not stamp.exists() or stamp.read_text().strip() != want:
        print(f"building {VENV} from {REQUIREMENTS.relative_to(ROOT)} with {sys.executable}", file=sys.stderr)
        subprocess.run(["rm", "-rf", str(VENV)], check=True)
        VENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
        subprocess.run(pip + ["install", "--quiet", "--no-deps", "-r", str(REQUIREMENTS)], check=True)
        subprocess.run(pip + ["check"], check=True)
        stamp.write_text(want + "\n")
    os.execv(str(python), [str(python), __file__, *sys.argv[1:]])


def load_rows():
    import numpy as np
    import pandas as pd

    raw = pd.read_parquet(ROOT / DATA)
    duration = (raw.lpep_dropoff_datetime - raw.lpep_pickup_datetime).dt.total_seconds() / 60
    raw = raw.assign(duration_min=duration)
    kept_mask = (
        (raw.duration_min >= 0)
        & (raw.duration_min <= 60)
        & (raw.passenger_count > 0)
        & (raw.passenger_count <= 8)
    )
    kept = raw[kept_mask]
    train = kept.iloc[:TRAIN_ROWS]
    after = kept.iloc[TRAIN_ROWS:]
    # Evenly spaced kept rows after the training rows, then rows whose features have nulls.
    step = len(after) // KEPT_ROWS_IN_EXPECTED
    sample = after.iloc[[i * step for i in range(KEPT_ROWS_IN_EXPECTED)]]
    with_nulls = raw[raw[FEATURES].isna().any(axis=1)]
    with_nulls = with_nulls.iloc[
        [i * (len(with_nulls) // NULL_ROWS_IN_EXPECTED) for i in range(NULL_ROWS_IN_EXPECTED)]
    ]
    rows = pd.concat([sample, with_nulls])
    x_train = train[FEATURES].astype("float64").fillna(0.0).to_numpy()
    y_train = train.duration_min.to_numpy()
    # The rows as the ONNX model sees them: float32 values (nulls as NaN here, 0 when fed).
    x_rows32 = rows[FEATURES].astype("float64").to_numpy().astype(np.float32)
    return x_train, y_train, x_rows32, rows.index.to_list(), len(raw), len(kept)


def f64(values) -> list:
    return [float(v) for v in values]


def main() -> None:
    ensure_venv()
    import numpy as np
    import onnx
    import onnxruntime
    import skl2onnx
    import sklearn
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeRegressor

    x_train, y_train, x_rows32, row_ids, input_rows, kept_rows = load_rows()
    x_rows = np.nan_to_num(x_rows32.astype(np.float64), nan=0.0)  # fillna(0)
    x_rows_missing = np.isnan(x_rows32)
    initial_types = [("input", FloatTensorType([None, len(FEATURES)]))]
    opsets = {"": 17, "ai.onnx.ml": 3}
    OUT.mkdir(parents=True, exist_ok=True)

    def save(model, name: str) -> str:
        path = OUT / name
        # A fixed producer text keeps the files byte-stable across runs.
        model.producer_version = skl2onnx.__version__
        model.doc_string = ""
        path.write_bytes(model.SerializeToString())
        onnx.checker.check_model(str(path))
        return str(path.relative_to(ROOT))

    def run_onnxruntime(path: str, output: int):
        session = onnxruntime.InferenceSession(str(ROOT / path), providers=["CPUExecutionProvider"])
        result = session.run(None, {"input": x_rows.astype(np.float32)})
        return result[output], [node.op_type for node in onnx.load(str(ROOT / path)).graph.node]

    def float32(values) -> list:
        return f64(np.asarray(values, dtype=np.float64).astype(np.float32))

    def x_json() -> list:
        return [
            [None if missing else float(v) for v, missing in zip(row, row_missing)]
            for row, row_missing in zip(x_rows32.astype(np.float64), x_rows_missing)
        ]

    models = []

    linreg = LinearRegression().fit(x_train, y_train)
    path = save(to_onnx(linreg, initial_types=initial_types, target_opset=opsets), "trip-duration-linreg.onnx")
    ort_out, ops = run_onnxruntime(path, 0)
    models.append(
        {
            "file": path,
            "estimator": "sklearn.linear_model.LinearRegression()",
            "onnx_ops": ops,
            "link": "identity",
            "coefficients": f64(linreg.coef_),
            "intercept": float(linreg.intercept_),
            "coefficients_float32": float32(linreg.coef_),
            "intercept_float32": float32([linreg.intercept_])[0],
            "rows": [
                {"row": int(i), "x": x, "sklearn_predict": float(p), "onnxruntime": float(o)}
                for i, x, p, o in zip(row_ids, x_json(), linreg.predict(x_rows), ort_out[:, 0])
            ],
        }
    )

    y_class = (y_train > THRESHOLD_MIN).astype(np.int64)
    logreg = LogisticRegression(max_iter=10_000).fit(x_train, y_class)
    path = save(
        to_onnx(
            logreg,
            initial_types=initial_types,
            target_opset=opsets,
            options={id(logreg): {"zipmap": False}},
        ),
        "trip-over-15min-logreg.onnx",
    )
    ort_out, ops = run_onnxruntime(path, 1)
    models.append(
        {
            "file": path,
            "estimator": "sklearn.linear_model.LogisticRegression(max_iter=10_000)",
            "target": f"duration_min > {THRESHOLD_MIN:g}",
            "classes": [int(c) for c in logreg.classes_],
            "onnx_ops": ops,
            "link": "logistic",
            "coefficients": f64(logreg.coef_[0]),
            "intercept": float(logreg.intercept_[0]),
            "coefficients_float32": float32(logreg.coef_[0]),
            "intercept_float32": float32(logreg.intercept_)[0],
            "rows": [
                {
                    "row": int(i),
                    "x": x,
                    "sklearn_decision_function": float(d),
                    "sklearn_predict_proba": float(p),
                    "onnxruntime": float(o),
                }
                for i, x, d, p, o in zip(
                    row_ids,
                    x_json(),
                    logreg.decision_function(x_rows),
                    logreg.predict_proba(x_rows)[:, 1],
                    ort_out[:, 1],
                )
            ],
        }
    )

    tree = DecisionTreeRegressor(max_depth=2, random_state=0).fit(x_train, y_train)
    path = save(to_onnx(tree, initial_types=initial_types, target_opset=opsets), "trip-duration-tree.onnx")
    _, ops = run_onnxruntime(path, 0)
    models.append({"file": path, "estimator": "sklearn.tree.DecisionTreeRegressor(max_depth=2)", "onnx_ops": ops})

    scaled = make_pipeline(StandardScaler(), LinearRegression()).fit(x_train, y_train)
    path = save(to_onnx(scaled, initial_types=initial_types, target_opset=opsets), "trip-duration-scaled-linreg.onnx")
    _, ops = run_onnxruntime(path, 0)
    models.append(
        {"file": path, "estimator": "make_pipeline(StandardScaler(), LinearRegression())", "onnx_ops": ops}
    )

    # Hand-edited variants (onnx.helper) of the exported models: other layouts and post transforms
    # of LinearClassifier that the loader supports, and a graph whose pass-through-looking Casts
    # change the output, which only running it (tract, at load) can catch.
    def variant(source: str, name: str, edit, estimator: str, output: int | None):
        model = onnx.load(str(OUT / source))
        edit(model.graph)
        path = save(model, name)
        entry = {"file": path, "estimator": estimator}
        if output is not None:
            out, entry["onnx_ops"] = run_onnxruntime(path, output)
            entry["rows"] = [
                {"row": int(i), "x": x, "onnxruntime": float(o)}
                for i, x, o in zip(row_ids, x_json(), out[:, 1] if out.ndim == 2 and out.shape[1] == 2 else out.ravel())
            ]
        else:
            entry["onnx_ops"] = [node.op_type for node in model.graph.node]
        models.append(entry)

    def set_attr(node, name, value):
        for i, attr in enumerate(node.attribute):
            if attr.name == name:
                del node.attribute[i]
                break
        node.attribute.append(onnx.helper.make_attribute(name, value))

    def softmax(graph):
        set_attr(graph.node[0], "post_transform", "SOFTMAX")

    def one_row(graph):
        node = graph.node[0]
        coefficients = [a for a in node.attribute if a.name == "coefficients"][0].floats
        intercepts = [a for a in node.attribute if a.name == "intercepts"][0].floats
        n = len(coefficients) // 2
        set_attr(node, "coefficients", list(coefficients[n:]))
        set_attr(node, "intercepts", [intercepts[1]])

    def truncated(graph):
        node = graph.node[0]
        node.output[0] = "raw"
        graph.node.extend(
            [
                onnx.helper.make_node("Cast", ["raw"], ["as_int"], to=onnx.TensorProto.INT64, name="ToInt"),
                onnx.helper.make_node("Cast", ["as_int"], ["variable"], to=onnx.TensorProto.FLOAT, name="ToFloat"),
            ]
        )

    variant(
        "trip-over-15min-logreg.onnx",
        "trip-over-15min-logreg-softmax.onnx",
        softmax,
        "the LogisticRegression export with post_transform SOFTMAX: column 1 = sigmoid(z1 - z0) = sigmoid(2 z)",
        1,
    )
    variant(
        "trip-over-15min-logreg.onnx",
        "trip-over-15min-logreg-1row.onnx",
        one_row,
        "the LogisticRegression export with one weight row (w, b) and LOGISTIC: column 1 = sigmoid(z)",
        1,
    )
    variant(
        "trip-duration-linreg.onnx",
        "trip-duration-linreg-truncated.onnx",
        truncated,
        "the LinearRegression export with Cast(INT64) then Cast(FLOAT) after LinearRegressor: truncates",
        0,
    )

    expected = {
        "generator": "scripts/models/make_onnx_models.py",
        "versions": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
            "skl2onnx": skl2onnx.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        "data": DATA,
        "input_rows": input_rows,
        "filter": "0 <= duration_min <= 60 and 0 < passenger_count <= 8 (nulls dropped)",
        "kept_rows": kept_rows,
        "train_rows": TRAIN_ROWS,
        "null_features": "replaced by 0 before fitting and predicting",
        "target_opset": opsets,
        "features": FEATURES,
        "models": models,
    }
    (OUT / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    for m in models:
        print(f"{m['file']}: {(ROOT / m['file']).stat().st_size} bytes, ops {m['onnx_ops']}")


if __name__ == "__main__":
    main()
