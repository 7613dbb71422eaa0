#!/usr/bin/env python3
"""Golden model-performance values for February 2022: per pickup day, the regression metrics
of the trips whose truth (the duration) arrives within the label horizon, computed with
scikit-learn, and per pickup borough (TLC zone lookup) the same.

The monitor labels a prediction when its completion's event time (the dropoff) is at most the
label horizon after the prediction's (the pickup): here 3 hours, the monitor's default.
Error = prediction - target; MAPE over rows whose target is not zero, as a fraction.

Per day (overall, not per borough) it also runs Evidently's own legacy regression metric,
`evidently.legacy.metrics.RegressionQualityMetric`, on the same labelled rows (a frame of just
the target `duration_min` and `prediction`, ColumnMapping(target, prediction), no reference) and
records its `current` numbers under `expected.evidently_regression_quality`. Evidently's MAPE is
in percent and, by default, counts a zero target as 100 %; see docs/ARCHITECTURE.md
("Evidently's regression metrics") for its exact definitions.

    scripts/goldens/make_goldens.sh --only performance
"""
from __future__ import annotations

import json
import sys
import warnings
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import sklearn
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    r2_score,
)

sys.path.insert(0, "scripts/goldens")
from evidently_goldens import generator_info, load_model, score, write_json  # noqa: E402

warnings.filterwarnings("ignore")  # evidently_goldens does the same; Evidently's plots warn

from evidently.legacy.metrics import RegressionQualityMetric  # noqa: E402
from evidently.legacy.pipeline.column_mapping import ColumnMapping  # noqa: E402
from evidently.legacy.report import Report  # noqa: E402

CURRENT = "data/green_tripdata_2022-02.parquet"
MODEL = "models/trip-duration-linear.json"
LOOKUP = "data/taxi_zone_lookup.csv"
HORIZON_MINUTES = 180.0
MIN_SEGMENT_ROWS = 30
REFERENCE = "data/reference.parquet"
OUTLIER_QUANTILES = (0.01, 0.99)


def error_bounds() -> dict:
    """The reference errors' quantile range and IQR fences (numpy's linear quantiles)."""
    ref = pd.read_parquet(REFERENCE)
    both = ref[ref.prediction.notna() & ref.duration_min.notna()]
    errors = (both.prediction.astype("float64") - both.duration_min.astype("float64")).to_numpy()
    errors = errors[np.isfinite(errors)]
    lo, hi = np.quantile(errors, OUTLIER_QUANTILES)
    q1, q3 = np.quantile(errors, [0.25, 0.75])
    return {"lower": lo, "upper": hi, "fence_low": q1 - 1.5 * (q3 - q1), "fence_high": q3 + 1.5 * (q3 - q1)}


def error_outliers(errors: np.ndarray, bounds: dict) -> dict:
    n = len(errors)
    outside = lambda lo, hi: int(((errors < lo) | (errors > hi)).sum())  # noqa: E731
    return {
        "error_lower_bound": bounds["lower"],
        "error_upper_bound": bounds["upper"],
        "error_share_outside_quantiles": outside(bounds["lower"], bounds["upper"]) / n if n else None,
        "error_share_outside_iqr": outside(bounds["fence_low"], bounds["fence_high"]) / n if n else None,
    }


def metrics(truth: np.ndarray, predicted: np.ndarray) -> dict:
    nonzero = truth != 0
    return {
        "mae": mean_absolute_error(truth, predicted),
        "rmse": float(np.sqrt(mean_squared_error(truth, predicted))),
        "mape": mean_absolute_percentage_error(truth[nonzero], predicted[nonzero])
        if nonzero.any()
        else None,
        "mape_rows": int(nonzero.sum()),
        "r2": r2_score(truth, predicted) if len(truth) >= 2 else None,
        "mean_error": float(np.mean(predicted - truth)),
    }


def evidently_metrics(truth: pd.Series, predicted: pd.Series) -> dict:
    """Evidently's RegressionQualityMetric on these rows, as its `current` result reports them.

    Run twice in one report: with its defaults (MAPE with `mape_zero_handling="replace"`, a zero
    target counting as 1.0, i.e. 100 %) and with `mape_zero_handling="drop"` (zero targets left
    out, our definition for non-negative targets). Every other number is the same in both runs.
    """
    frame = pd.DataFrame({"duration_min": truth.to_numpy(), "prediction": predicted.to_numpy()})
    # Evidently drops rows with a null or infinite target or prediction; there must be none, or
    # it would measure other rows than scikit-learn and the monitor.
    assert np.isfinite(frame.to_numpy()).all()
    default, drop = RegressionQualityMetric(), RegressionQualityMetric(mape_zero_handling="drop")
    report = Report(metrics=[default, drop])
    report.run(
        reference_data=None,
        current_data=frame,
        column_mapping=ColumnMapping(
            target="duration_min", prediction="prediction", numerical_features=[], categorical_features=[]
        ),
    )
    current, dropped = default.get_result().current, drop.get_result().current
    return {
        "mean_error": float(current.mean_error),
        "mean_abs_error": float(current.mean_abs_error),
        "rmse": float(current.rmse),
        "r2_score": float(current.r2_score),
        "mean_abs_perc_error": float(current.mean_abs_perc_error),
        "near_zero_values": int(current.near_zero_values),
        "mean_abs_perc_error_drop_zeros": float(dropped.mean_abs_perc_error),
        "abs_error_max": float(current.abs_error_max),
        "error_std": float(current.error_std),
    }


def main() -> None:
    raw = pd.read_parquet(CURRENT)
    month = datetime(2022, 2, 1)
    raw = raw[(raw.lpep_pickup_datetime >= month) & (raw.lpep_pickup_datetime < datetime(2022, 3, 1))]
    model = load_model(MODEL)
    raw = raw.assign(prediction=score(raw, model))
    duration = (raw.lpep_dropoff_datetime - raw.lpep_pickup_datetime).dt.total_seconds() / 60
    raw = raw.assign(duration_min=duration)
    zones = pd.read_csv(LOOKUP)
    boroughs = dict(zip(zones.LocationID.astype(str), zones.Borough))
    raw = raw.assign(
        pickup_borough=raw.PULocationID.map(
            lambda v: "(missing)" if pd.isna(v) else boroughs.get(str(int(v)), "(unmapped)")
        )
    )
    bounds = error_bounds()
    cases = []
    for day in range(28):
        start = month + timedelta(days=day)
        window = raw[(raw.lpep_pickup_datetime >= start) & (raw.lpep_pickup_datetime < start + timedelta(days=1))]
        labelled = window[window.duration_min <= HORIZON_MINUTES]
        expected = {
            "predictions": len(window),
            "labelled_rows": len(labelled),
            **metrics(labelled.duration_min.to_numpy(), labelled.prediction.to_numpy()),
            **error_outliers((labelled.prediction - labelled.duration_min).to_numpy(), bounds),
            "evidently_regression_quality": evidently_metrics(labelled.duration_min, labelled.prediction),
            "segments": {},
        }
        for borough, part in window.groupby("pickup_borough"):
            rows = part[part.duration_min <= HORIZON_MINUTES]
            entry = {"predictions": len(part), "labelled_rows": len(rows)}
            if len(rows) >= MIN_SEGMENT_ROWS:
                entry.update(metrics(rows.duration_min.to_numpy(), rows.prediction.to_numpy()))
            expected["segments"][borough] = entry
        cases.append({"start": start.strftime("%Y-%m-%dT%H:%M:%S"), "expected": expected})
    write_json(
        "tests/golden/feb-2022-performance.json",
        {
            "description": "Regression metrics per pickup day of February 2022 (trips labelled within "
            "3 h of pickup), overall and per pickup borough (segments with at least 30 labelled "
            "rows), from scikit-learn; the share of the labelled rows' errors (prediction - target) outside "
            "the reference errors' 1st..99th percentile and IQR fences, from NumPy.",
            "generator": {**generator_info(), "scikit-learn": sklearn.__version__},
            "current": CURRENT,
            "model": MODEL,
            "lookup": LOOKUP,
            "label_horizon_minutes": HORIZON_MINUTES,
            "evidently_regression_quality": {
                "description": "Per case, expected.evidently_regression_quality holds the `current` "
                "result of Evidently's legacy RegressionQualityMetric on the day's labelled rows "
                "(ColumnMapping(target='duration_min', prediction='prediction'), no reference). "
                "mean_abs_perc_error is in percent with Evidently's default zero handling "
                "('replace': a target with |t| <= float64 eps counts as 1.0, i.e. 100 %, and stays in "
                "the denominator); mean_abs_perc_error_drop_zeros is the same metric with "
                "mape_zero_handling='drop'. Both divide by max(t, eps), not |t|. near_zero_values is "
                "Evidently's count, which is 2 x the number of zero targets (it is the .size of a "
                "two-column frame). error_std is the sample std (ddof=1) of the errors.",
                "metric": "evidently.legacy.metrics.RegressionQualityMetric",
                "target": "duration_min",
                "prediction": "prediction",
            },
            "cases": cases,
        },
    )


if __name__ == "__main__":
    main()
