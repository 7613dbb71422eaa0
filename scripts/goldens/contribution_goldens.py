#!/usr/bin/env python3
"""Golden values for the monitor's per-feature contributions of the linear model, computed
with NumPy and SciPy.

Writes tests/golden/feb-2022-contributions.json: one case per day 2022-02-01 .. 2022-02-28
(raw February rows with lpep_pickup_datetime in [day, day+1)), against data/reference.parquet,
for every feature of models/trip-duration-linear.json.

Definitions (monitor/src/explain.rs), with x the feature with missing values as 0 (the
scorer's fillna(0)), a its coefficient and m = np.mean(x_reference):
- contribution c = a * (x - m);
- mean_contribution = np.mean(c), mean_abs_contribution = np.mean(np.abs(c)), and the same
  on the reference;
- drift_score = scipy.stats.wasserstein_distance(c_reference, c) / max(np.std(c_reference),
  0.001) (Evidently's normed Wasserstein), drift when >= 0.1.

    scripts/goldens/make_goldens.sh --only contributions
"""
from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import scipy
from scipy.stats import wasserstein_distance

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evidently_goldens import generator_info, write_json  # noqa: E402

CURRENT = "data/green_tripdata_2022-02.parquet"
REFERENCE = "data/reference.parquet"
MODEL = "models/trip-duration-linear.json"


def model_input(frame: pd.DataFrame, feature: str) -> np.ndarray:
    return frame[feature].astype("float64").fillna(0.0).to_numpy(dtype=np.float64)


def main() -> None:
    model = json.load(open(MODEL))
    reference = pd.read_parquet(REFERENCE)
    current = pd.read_parquet(CURRENT)
    terms = list(zip(model["features"], model["coefficients"]))
    ref = {}
    for feature, a in terms:
        x = model_input(reference, feature)
        m = float(np.mean(x))
        c = a * (x - m)
        ref[feature] = (m, c, float(np.mean(np.abs(c))))
    cases = []
    month = datetime(2022, 2, 1)
    for day in range(28):
        start = month + timedelta(days=day)
        window = current[
            (current.lpep_pickup_datetime >= start)
            & (current.lpep_pickup_datetime < start + timedelta(days=1))
        ]
        features = []
        for feature, a in terms:
            m, c_ref, ref_abs = ref[feature]
            c = a * (model_input(window, feature) - m)
            score = wasserstein_distance(c_ref, c) / max(np.std(c_ref), 0.001)
            features.append(
                {
                    "feature": feature,
                    "coefficient": a,
                    "reference_mean": m,
                    "mean_contribution": float(np.mean(c)),
                    "mean_abs_contribution": float(np.mean(np.abs(c))),
                    "reference_mean_abs_contribution": ref_abs,
                    "drift_score": float(score),
                    "drift_detected": bool(score >= 0.1),
                    "rows": int(len(c)),
                }
            )
        cases.append({"start": start.strftime("%Y-%m-%dT%H:%M:%S"), "features": features})
    write_json(
        "tests/golden/feb-2022-contributions.json",
        {
            "description": "Per-feature contributions coefficient * (x - reference mean) of the "
            "course's linear model (missing x as 0) per February 2022 day: mean, mean absolute, "
            "and their normed Wasserstein drift against the reference, from NumPy and SciPy.",
            "generator": {**generator_info(), "scipy": scipy.__version__},
            "current": CURRENT,
            "reference": REFERENCE,
            "model": MODEL,
            "cases": cases,
        },
    )


if __name__ == "__main__":
    main()
