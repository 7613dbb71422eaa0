#!/usr/bin/env python3
"""Golden values from Evidently's legacy Report for the Rust drift / data-quality engine.

Writes (relative to the repo root, which must be the working directory):
  tests/golden/feb-2022-daily.json             one case per day 2022-02-01 .. 2022-02-28
  tests/golden/feb-2022-hourly.json            one case per 1h tumbling window holding a February trip
  tests/golden/feb-2022-sliding-1d-1h.json     one case per 1d window sliding by 1h holding a February trip
  tests/golden/synthetic.json                   synthetic edge cases
  tests/golden/synthetic/<case>/{reference,current}.parquet   their inputs

Run it through scripts/goldens/make_goldens.sh, which pins the environment
(evidently 0.7.23, pandas 2.3.3, numpy, scipy; see requirements.txt).

The daily cases follow the MLOps Zoomcamp monitoring job: the current window is the raw
February rows with lpep_pickup_datetime in [day, day+1), scored with the linear model of
models/trip-duration-linear.json exactly as the Rust scorer does it (left to right, float64,
null -> 0.0), against the reference split in data/reference.parquet.
The hourly and sliding cases do the same over the February event set (pickup in [2022-02-01, 2022-03-01)):
every epoch-aligned window [s, s+size) with s on a whole hour that holds at least one of those events
(`--only windows`; 2 worker processes by default, `--workers N`).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import warnings
from datetime import datetime, timedelta
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy

warnings.filterwarnings("ignore")

import evidently  # noqa: E402
from evidently.legacy.metrics import (  # noqa: E402
    ColumnDriftMetric,
    ColumnQuantileMetric,
    DataDriftTable,
    DatasetDriftMetric,
    DatasetMissingValuesMetric,
)
from evidently.legacy.pipeline.column_mapping import ColumnMapping  # noqa: E402
from evidently.legacy.report import Report  # noqa: E402

# Paths recorded in the JSON (always the repo paths, whatever files were actually read).
REF_PATH = "data/reference.parquet"
CUR_PATH = "data/green_tripdata_2022-02.parquet"
MODEL_PATH = "models/trip-duration-linear.json"
GOLDEN_DIR = "tests/golden"
TIME_COLUMN = "lpep_pickup_datetime"

COURSE_MAPPING = {
    "prediction": "prediction",
    "numerical_features": ["passenger_count", "trip_distance", "fare_amount", "total_amount"],
    "categorical_features": ["PULocationID", "DOLocationID"],
}

# Evidently's result carries the stattest display name; the goldens use the registry name.
STATTEST_NAMES = {
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
}

PARQUET_COMPRESSION = "gzip"  # the codec of the TLC files, so any reader of those reads these


# --------------------------------------------------------------------------------------------
# Evidently
# --------------------------------------------------------------------------------------------


def generator_info() -> Dict[str, str]:
    return {
        "evidently": evidently.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
    }


def make_metrics(mapping: Dict[str, Any], quantile_column: str):
    return [
        ColumnDriftMetric(column_name=mapping["prediction"]),
        DatasetDriftMetric(),
        DatasetMissingValuesMetric(),
        DataDriftTable(),
        ColumnQuantileMetric(column_name=quantile_column, quantile=0.5),
    ]


def column_mapping(mapping: Dict[str, Any]) -> ColumnMapping:
    return ColumnMapping(
        prediction=mapping["prediction"],
        numerical_features=list(mapping["numerical_features"]),
        categorical_features=list(mapping["categorical_features"]),
        target=None,
    )


def run_report(reference: pd.DataFrame, current: pd.DataFrame, mapping: Dict[str, Any], quantile_column: str):
    metrics = make_metrics(mapping, quantile_column)
    report = Report(metrics=metrics)
    report.run(reference_data=reference, current_data=current, column_mapping=column_mapping(mapping))
    return report, metrics


def _f(x: Any) -> float:
    return float(x)


def _drift_entry(r) -> Dict[str, Any]:
    return {
        "column_type": str(r.column_type),
        "stattest": STATTEST_NAMES[r.stattest_name],
        "threshold": _f(r.stattest_threshold),
        "drift_score": _f(r.drift_score),
        "drift_detected": bool(r.drift_detected),
    }


def evaluate(reference: pd.DataFrame, current: pd.DataFrame, mapping: Dict[str, Any], quantile_column: str):
    """Returns (expected, expected_error)."""
    try:
        _report, (m_col, m_ds, m_mv, m_tab, m_q) = run_report(reference, current, mapping, quantile_column)
        col = m_col.get_result()
        ds = m_ds.get_result()
        mv = m_mv.get_result()
        tab = m_tab.get_result()
        q = m_q.get_result()
    except Exception as ex:  # Evidently refuses this input: record its message
        return None, str(ex)

    columns = []
    for name, r in tab.drift_by_columns.items():
        entry = {"column": name}
        entry.update(_drift_entry(r))
        columns.append(entry)
    # DatasetDriftMetric and DataDriftTable run the same calculation; make sure they agree.
    assert ds.number_of_columns == tab.number_of_columns == len(columns)
    assert ds.number_of_drifted_columns == tab.number_of_drifted_columns
    assert ds.dataset_drift == tab.dataset_drift
    assert ds.number_of_drifted_columns == sum(c["drift_detected"] for c in columns)

    cur_mv = mv.current
    assert cur_mv.number_of_rows == len(current)
    expected = {
        "row_count": int(cur_mv.number_of_rows),
        "number_of_columns": int(cur_mv.number_of_columns),
        "number_of_missing_values": int(cur_mv.number_of_missing_values),
        "share_of_missing_values": _f(cur_mv.share_of_missing_values),
        "number_of_drifted_columns": int(ds.number_of_drifted_columns),
        "share_of_drifted_columns": _f(ds.share_of_drifted_columns),
        "dataset_drift": bool(ds.dataset_drift),
        "columns": columns,
        "prediction_drift": _drift_entry(col),
        "quantiles": [{"column": quantile_column, "quantile": 0.5, "value": _f(q.current.value)}],
    }
    return expected, None


# --------------------------------------------------------------------------------------------
# JSON with non-finite floats as strings
# --------------------------------------------------------------------------------------------


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "Infinity" if x > 0 else "-Infinity"
        return x
    return x


def write_json(path: str, doc: Dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(_jsonable(doc), fh, indent=1, allow_nan=False)
        fh.write("\n")


# --------------------------------------------------------------------------------------------
# Daily February cases
# --------------------------------------------------------------------------------------------


def load_model(path: str) -> Dict[str, Any]:
    with open(path) as fh:
        model = json.load(fh)
    assert len(model["features"]) == len(model["coefficients"]) == 6, model
    return model


def score(frame: pd.DataFrame, model: Dict[str, Any]) -> np.ndarray:
    """Exactly the Rust scorer: p = intercept; p = p + c * x_f, left to right, in float64."""
    p = np.full(len(frame), float(model["intercept"]), dtype=np.float64)
    for c, f in zip(model["coefficients"], model["features"]):
        x = frame[f].astype("float64").fillna(0.0).to_numpy(dtype=np.float64)
        p = p + np.float64(c) * x  # elementwise multiply then add: no FMA, no dot
    return p


def daily_windows(month_start: datetime, days: int):
    for i in range(days):
        start = month_start + timedelta(days=i)
        yield start, start + timedelta(days=1)


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S")


def time_window_case(name: str, start: datetime, end: datetime, expected, error) -> Dict[str, Any]:
    """One case over a time window of the February file (the format of every feb-2022-*.json file)."""
    return {
        "name": name,
        "reference": REF_PATH,
        "current": CUR_PATH,
        "score_current_with": MODEL_PATH,
        "time_column": TIME_COLUMN,
        "start": _ts(start),
        "end": _ts(end),
        "column_mapping": COURSE_MAPPING,
        "expected": expected,
        "expected_error": error,
    }


def feb_cases(ref_file: str, cur_file: str, model_file: str) -> List[Dict[str, Any]]:
    reference = pd.read_parquet(ref_file)
    raw = pd.read_parquet(cur_file)
    model = load_model(model_file)
    cases = []
    for start, end in daily_windows(datetime(2022, 2, 1), 28):
        window = raw[(raw[TIME_COLUMN] >= start) & (raw[TIME_COLUMN] < end)].copy()
        window["prediction"] = score(window, model)
        expected, error = evaluate(reference, window, COURSE_MAPPING, "fare_amount")
        case = time_window_case(start.strftime("%Y-%m-%d"), start, end, expected, error)
        cases.append(case)
        if expected is not None:
            print(
                f"  {case['name']}: rows={expected['row_count']:5d} "
                f"prediction_drift={expected['prediction_drift']['drift_score']!r} "
                f"drifted={expected['number_of_drifted_columns']} "
                f"missing_share={expected['share_of_missing_values']!r} "
                f"q50={expected['quantiles'][0]['value']!r}"
            )
        else:
            print(f"  {case['name']}: ERROR {error}")
    return cases


# --------------------------------------------------------------------------------------------
# Hourly tumbling and 1d/1h sliding February windows
# --------------------------------------------------------------------------------------------

FEB_START = datetime(2022, 2, 1)
FEB_END = datetime(2022, 3, 1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# Window specs as the monitor spells them (`--window 1h`, `--window 1d/1h`): label, size, step, output file.
WINDOW_SETS = [
    ("1h", HOUR, HOUR, "feb-2022-hourly.json"),
    ("1d/1h", DAY, HOUR, "feb-2022-sliding-1d-1h.json"),
]

# Set in the parent before the worker pool forks (read-only in the workers).
_WINDOW_STATE: Dict[str, Any] = {}


def feb_events(raw: pd.DataFrame) -> pd.DataFrame:
    """The February event set: rows with pickup in [2022-02-01, 2022-03-01), in file order."""
    t = raw[TIME_COLUMN]
    return raw[(t >= FEB_START) & (t < FEB_END)]


def window_starts(times: pd.Series, size: timedelta, step: timedelta) -> List[datetime]:
    """Starts s (multiples of `step` since the epoch) of every window [s, s+size) holding at least one event."""
    step_us = step // timedelta(microseconds=1)
    size_us = size // timedelta(microseconds=1)
    assert size_us % step_us == 0
    us = times.to_numpy(dtype="datetime64[us]").astype(np.int64)
    panes = np.unique(us // step_us)  # floor division: epoch-aligned panes
    starts = np.unique((panes[:, None] - np.arange(size_us // step_us)[None, :]).ravel())
    epoch = datetime(1970, 1, 1)
    return [epoch + timedelta(microseconds=int(p * step_us)) for p in starts]


def _window_worker(task):
    name, start, end = task
    st = _WINDOW_STATE
    t = st["events"][TIME_COLUMN]
    window = st["events"][(t >= start) & (t < end)].copy()
    assert len(window) > 0, name
    window["prediction"] = score(window, st["model"])
    expected, error = evaluate(st["reference"], window, COURSE_MAPPING, "fare_amount")
    return time_window_case(name, start, end, expected, error)


def window_cases(ref_file: str, cur_file: str, model_file: str, workers: int) -> Dict[str, List[Dict[str, Any]]]:
    """Every window of each WINDOW_SETS spec over the February event set; {file name: cases}."""
    import multiprocessing as mp
    import time

    events = feb_events(pd.read_parquet(cur_file))
    _WINDOW_STATE.update(reference=pd.read_parquet(ref_file), events=events, model=load_model(model_file))
    tasks = []
    for label, size, step, fname in WINDOW_SETS:
        for start in window_starts(events[TIME_COLUMN], size, step):
            tasks.append((fname, (f"{label}/{_ts(start)}", start, start + size)))
    out: Dict[str, List[Dict[str, Any]]] = {fname: [] for _, _, _, fname in WINDOW_SETS}
    t0 = time.monotonic()
    print(f"  {len(events)} February events, {len(tasks)} windows, {workers} worker(s)")
    # The workers keep numpy's default BLAS threads, like the daily cases: scipy's wasserstein_distance ends in
    # an OpenBLAS dot (np.vecdot) whose summation order, hence the last ulps, depends on the thread count.
    ctx = mp.get_context("fork")
    with ctx.Pool(workers) as pool:
        results = pool.imap(_window_worker, [t for _, t in tasks], chunksize=4)
        for i, ((fname, _), case) in enumerate(zip(tasks, results), 1):
            out[fname].append(case)
            if case["expected"] is None:
                print(f"  {case['name']}: ERROR {case['expected_error']}")
            if i % 200 == 0 or i == len(tasks):
                print(f"  {i}/{len(tasks)} windows, {time.monotonic() - t0:.1f} s")
    _WINDOW_STATE.clear()
    return out


def window_summary(fname: str, cases: List[Dict[str, Any]]) -> str:
    ok = [c["expected"] for c in cases if c["expected"] is not None]
    return (
        f"{fname}: {len(cases)} windows ({cases[0]['start']} .. {cases[-1]['start']}), "
        f"{sum(e['dataset_drift'] for e in ok)} with dataset drift, {len(cases) - len(ok)} Evidently errors, "
        f"rows per window {min(e['row_count'] for e in ok)}..{max(e['row_count'] for e in ok)}"
    )


def write_json_compact(path: str, doc: Dict[str, Any]) -> None:
    """Like write_json, without indentation: one case per line (floats are still Python reprs)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)

    def dump(x):
        return json.dumps(_jsonable(x), separators=(",", ":"), allow_nan=False)

    with open(path, "w") as fh:
        fh.write('{"generator":' + dump(doc["generator"]) + ',"cases":[\n')
        fh.write(",\n".join(dump(c) for c in doc["cases"]))
        fh.write("\n]}\n")


# --------------------------------------------------------------------------------------------
# Synthetic cases
# --------------------------------------------------------------------------------------------


def _cont(rng, n, loc, scale, decimals=2):
    """Continuous values rounded so that Parquet's dictionary encoding keeps the files small."""
    return np.round(rng.normal(loc, scale, n), decimals)


def _cat(rng, n, low, high, p=None):
    vals = np.arange(low, high + 1)
    return rng.choice(vals, size=n, p=p).astype(np.int64)


def _with_nulls(rng, values, share):
    values = np.asarray(values, dtype=np.float64).copy()
    values[rng.random(len(values)) < share] = np.nan
    return values


def _put(values, rng, count, value):
    values = np.asarray(values, dtype=np.float64).copy()
    idx = rng.choice(len(values), size=count, replace=False)
    values[idx] = value
    return values


def _strings(rng, n, empty_share, none_share):
    words = np.array(["N", "Y", "x", " "])
    out = rng.choice(words, size=n).astype(object)
    u = rng.random(n)
    out[u < empty_share] = ""
    out[(u >= empty_share) & (u < empty_share + none_share)] = None
    return out


def _mapping(num, cat, prediction="prediction"):
    return {"prediction": prediction, "numerical_features": list(num), "categorical_features": list(cat)}


SyntheticBuilder = Callable[[np.random.Generator], Dict[str, Any]]
SYNTHETIC: List[tuple] = []


def synthetic(name: str, seed: int, description: str):
    def deco(fn: SyntheticBuilder):
        SYNTHETIC.append((name, seed, description, fn))
        return fn

    return deco


@synthetic(
    "large_ref_mixed",
    101,
    "reference 2000 rows (>1000): wasserstein for continuous num (incl. a constant reference column, std 0 -> /0.001), "
    "jensenshannon for num k<=2 and k in 3..5, for cat (with current-only categories) and cat k=2; "
    "NaN in current drift columns (dataset-path cleaning); prediction drifts",
)
def _large_ref_mixed(rng):
    nr, nc = 2000, 1500
    ref = pd.DataFrame(
        {
            "num_cont": _cont(rng, nr, 10, 3),
            "num_const_ref": np.full(nr, 5.0),
            "num_k2": rng.choice([0.0, 1.0], nr, p=[0.7, 0.3]),
            "num_k4": rng.choice([1.0, 2.0, 3.0, 4.0], nr),
            "cat_many": _cat(rng, nr, 1, 50),
            "cat_k2": _cat(rng, nr, 0, 1),
            "prediction": _cont(rng, nr, 15, 5, 3),
        }
    )
    cur = pd.DataFrame(
        {
            "num_cont": _with_nulls(rng, _cont(rng, nc, 10.2, 3), 0.05),
            "num_const_ref": _cont(rng, nc, 5, 0.01, 3),
            "num_k2": rng.choice([0.0, 1.0], nc, p=[0.5, 0.5]),
            "num_k4": rng.choice([1.0, 2.0, 3.0, 4.0], nc, p=[0.1, 0.2, 0.3, 0.4]),
            "cat_many": _with_nulls(rng, _cat(rng, nc, 1, 55), 0.02),
            "cat_k2": _cat(rng, nc, 0, 1),
            "prediction": _cont(rng, nc, 16, 5, 3),
        }
    )
    return dict(
        reference=ref,
        current=cur,
        mapping=_mapping(["num_cont", "num_const_ref", "num_k2", "num_k4"], ["cat_many", "cat_k2"]),
    )


@synthetic(
    "large_ref_small_window",
    102,
    "reference 5000 rows against a 250-row window: still wasserstein/jensenshannon (choice depends on the reference "
    "size only); current-only categories; prediction column named 'predicted_duration'",
)
def _large_ref_small_window(rng):
    nr, nc = 5000, 250
    ref = pd.DataFrame(
        {
            "trip_km": np.round(rng.gamma(2.0, 2.0, nr), 2),
            "fare": _cont(rng, nr, 12, 4),
            "zone": _cat(rng, nr, 1, 30),
            "predicted_duration": _cont(rng, nr, 14, 4, 3),
        }
    )
    cur = pd.DataFrame(
        {
            "trip_km": np.round(rng.gamma(2.0, 2.6, nc), 2),
            "fare": _cont(rng, nc, 12, 4),
            "zone": _cat(rng, nc, 20, 40),
            "predicted_duration": _cont(rng, nc, 14.1, 4, 3),
        }
    )
    return dict(reference=ref, current=cur, mapping=_mapping(["trip_km", "fare"], ["zone"], "predicted_duration"))


@synthetic(
    "ref_size_boundary",
    103,
    "reference 1001 rows: columns without NaN keep 1001 values (wasserstein/jensenshannon), columns with 2 NaN in the "
    "reference are cleaned to 999 (ks/chisquare): the regime is chosen per column on the cleaned reference size",
)
def _ref_size_boundary(rng):
    nr, nc = 1001, 600
    ref = pd.DataFrame(
        {
            "num_full": _cont(rng, nr, 0, 1, 3),
            "num_holes": _put(_cont(rng, nr, 0, 1, 3), rng, 2, np.nan),
            "cat_full": _cat(rng, nr, 1, 8),
            "cat_holes": _put(_cat(rng, nr, 1, 8), rng, 2, np.nan),
            "prediction": _cont(rng, nr, 20, 6, 3),
        }
    )
    cur = pd.DataFrame(
        {
            "num_full": _cont(rng, nc, 0.05, 1, 3),
            "num_holes": _cont(rng, nc, 0.05, 1, 3),
            "cat_full": _cat(rng, nc, 1, 8),
            "cat_holes": _cat(rng, nc, 1, 8),
            "prediction": _cont(rng, nc, 20, 6, 3),
        }
    )
    return dict(reference=ref, current=cur, mapping=_mapping(["num_full", "num_holes"], ["cat_full", "cat_holes"]))


@synthetic(
    "ref_exactly_1000",
    104,
    "reference exactly 1000 rows (the small regime, <=1000): ks, chisquare (num k=4, cat k>2), z (num k=2, cat k=2)",
)
def _ref_exactly_1000(rng):
    nr, nc = 1000, 1000
    ref = pd.DataFrame(
        {
            "num_cont": _cont(rng, nr, 50, 10),
            "num_k4": rng.choice([0.0, 1.0, 2.0, 5.0], nr),
            "num_k2": rng.choice([2.0, 3.0], nr, p=[0.6, 0.4]),
            "cat_many": _cat(rng, nr, 100, 120),
            "cat_k2": _cat(rng, nr, 7, 8),
            "prediction": _cont(rng, nr, 10, 2, 3),
        }
    )
    cur = pd.DataFrame(
        {
            "num_cont": _cont(rng, nc, 50, 10),
            "num_k4": rng.choice([0.0, 1.0, 2.0, 5.0], nc, p=[0.3, 0.3, 0.2, 0.2]),
            "num_k2": rng.choice([2.0, 3.0], nc, p=[0.55, 0.45]),
            "cat_many": _cat(rng, nc, 100, 120),
            "cat_k2": _cat(rng, nc, 7, 8),
            "prediction": _cont(rng, nc, 10.3, 2, 3),
        }
    )
    return dict(
        reference=ref,
        current=cur,
        mapping=_mapping(["num_cont", "num_k4", "num_k2"], ["cat_many", "cat_k2"]),
    )


@synthetic(
    "small_ref_ks_exact_equal",
    105,
    "reference 400 = current 400 rows: ks exact, equal sizes (scipy _compute_prob_outside_square), incl. a permuted "
    "copy (D=0 -> p=1) and a strong shift (p underflows); chisquare num k=3, z num k=2, chisquare and z for cat",
)
def _small_ref_ks_exact_equal(rng):
    n = 400
    base = _cont(rng, n, 0, 1, 3)
    ref = pd.DataFrame(
        {
            "num_shift": _cont(rng, n, 0, 1, 3),
            "num_same": base,
            "num_mild": _cont(rng, n, 3, 1, 2),
            "num_k3": rng.choice([1.0, 2.0, 3.0], n),
            "num_k2": rng.choice([0.0, 1.0], n),
            "cat_many": _cat(rng, n, 1, 12),
            "cat_k2": _cat(rng, n, 1, 2),
            "prediction": _cont(rng, n, 10, 3, 3),
        }
    )
    cur = pd.DataFrame(
        {
            "num_shift": _cont(rng, n, 1.0, 1, 3),
            "num_same": rng.permutation(base),
            "num_mild": _cont(rng, n, 3.1, 1, 2),
            "num_k3": rng.choice([1.0, 2.0, 3.0], n, p=[0.2, 0.3, 0.5]),
            "num_k2": rng.choice([0.0, 1.0], n, p=[0.6, 0.4]),
            "cat_many": _cat(rng, n, 1, 12),
            "cat_k2": _cat(rng, n, 1, 2, p=[0.3, 0.7]),
            "prediction": _cont(rng, n, 10.4, 3, 3),
        }
    )
    return dict(
        reference=ref,
        current=cur,
        mapping=_mapping(["num_shift", "num_same", "num_mild", "num_k3", "num_k2"], ["cat_many", "cat_k2"]),
    )


@synthetic(
    "small_ref_ks_exact_unequal",
    106,
    "reference 700 vs current 1300 rows: ks exact, unequal sizes (scipy _compute_outer_prob_inside_method); "
    "current-only categories (chisquare p=0); z with one identical constant (p=1) and two different constants",
)
def _small_ref_ks_exact_unequal(rng):
    nr, nc = 700, 1300
    ref = pd.DataFrame(
        {
            "num_cont": _cont(rng, nr, 5, 2),
            "num_ties": np.round(rng.normal(5, 2, nr)),
            "num_const_same": np.full(nr, 3.0),
            "cat_new": _cat(rng, nr, 1, 10),
            "cat_same": _cat(rng, nr, 1, 10),
            "cat_const_diff": np.full(nr, 7, dtype=np.int64),
            "prediction": _cont(rng, nr, 12, 3, 3),
        }
    )
    cur = pd.DataFrame(
        {
            "num_cont": _cont(rng, nc, 5.15, 2),
            "num_ties": np.round(rng.normal(5.3, 2, nc)),
            "num_const_same": np.full(nc, 3.0),
            "cat_new": _cat(rng, nc, 1, 12),
            "cat_same": _cat(rng, nc, 1, 10),
            "cat_const_diff": np.full(nc, 8, dtype=np.int64),
            "prediction": _cont(rng, nc, 12, 3, 3),
        }
    )
    return dict(
        reference=ref,
        current=cur,
        mapping=_mapping(["num_cont", "num_ties", "num_const_same"], ["cat_new", "cat_same", "cat_const_diff"]),
    )


@synthetic(
    "small_ref_ks_asymp",
    107,
    "reference 1000 vs current 12000 rows: ks asymptotic (max size > 10000, scipy kstwo.sf), with and without drift; "
    "chisquare for cat",
)
def _small_ref_ks_asymp(rng):
    nr, nc = 1000, 12000
    ref = pd.DataFrame(
        {
            "num_a": _cont(rng, nr, 20, 5, 1),
            "num_b": _cont(rng, nr, 20, 5, 1),
            "cat": _cat(rng, nr, 1, 6),
            "prediction": _cont(rng, nr, 30, 8, 1),
        }
    )
    cur = pd.DataFrame(
        {
            "num_a": _cont(rng, nc, 20, 5, 1),
            "num_b": _cont(rng, nc, 21, 5, 1),
            "cat": _cat(rng, nc, 1, 6),
            "prediction": _cont(rng, nc, 30.3, 8, 1),
        }
    )
    return dict(reference=ref, current=cur, mapping=_mapping(["num_a", "num_b"], ["cat"]))


@synthetic(
    "inf_large_ref",
    108,
    "+inf/-inf with a large reference (1500 rows): in a current column that also has NaN (cleaned: inf dropped) and in "
    "current columns without NaN (kept by the dataset path); the prediction holds +inf without NaN, so "
    "ColumnDriftMetric (always cleans) and the dataset path (keeps) differ; inf counted as missing",
)
def _inf_large_ref(rng):
    nr, nc = 1500, 800
    ref = pd.DataFrame(
        {
            "num_inf_nan": _cont(rng, nr, 0, 1, 3),
            "num_pinf": _cont(rng, nr, 0, 1, 3),
            "num_ninf": _cont(rng, nr, 0, 1, 3),
            "num_k3_inf": rng.choice([1.0, 2.0, 3.0], nr),
            "cat": _cat(rng, nr, 1, 5),
            "prediction": _cont(rng, nr, 10, 2, 3),
        }
    )
    a = _put(_cont(rng, nc, 0.1, 1, 3), rng, 10, np.nan)
    a = _put(a, rng, 3, np.inf)
    a = _put(a, rng, 2, -np.inf)
    cur = pd.DataFrame(
        {
            "num_inf_nan": a,
            "num_pinf": _put(_cont(rng, nc, 0, 1, 3), rng, 4, np.inf),
            "num_ninf": _put(_cont(rng, nc, 0, 1, 3), rng, 4, -np.inf),
            "num_k3_inf": _put(rng.choice([1.0, 2.0, 3.0], nc), rng, 5, np.inf),
            "cat": _cat(rng, nc, 1, 5),
            "prediction": _put(_cont(rng, nc, 10.5, 2, 3), rng, 2, np.inf),
        }
    )
    return dict(
        reference=ref,
        current=cur,
        mapping=_mapping(["num_inf_nan", "num_pinf", "num_ninf", "num_k3_inf"], ["cat"]),
    )


@synthetic(
    "inf_small_ref",
    109,
    "+inf/-inf with a small reference (500 rows): ks on columns that keep their inf (no NaN) and on a cleaned one "
    "(inf+NaN), inf as a value of chisquare (num k 3..5) and z (num k=2); -inf in the reference; the quantile column "
    "holds +inf",
)
def _inf_small_ref(rng):
    nr, nc = 500, 450
    q = _put(_cont(rng, nc, 1, 1, 3), rng, 30, np.inf)
    b = _put(_cont(rng, nc, 0, 1, 3), rng, 5, np.nan)
    b = _put(b, rng, 5, -np.inf)
    cur = pd.DataFrame(
        {
            "num_q": q,
            "num_inf_nan": b,
            "num_ninf_ref": _cont(rng, nc, 0, 1, 3),
            "num_k3_inf": _put(rng.choice([1.0, 2.0], nc), rng, 20, np.inf),
            "num_k2_inf": _put(np.full(nc, 4.0), rng, 15, -np.inf),
            "cat": _cat(rng, nc, 1, 4),
            "prediction": _cont(rng, nc, 10, 2, 3),
        }
    )
    ref = pd.DataFrame(
        {
            "num_q": _cont(rng, nr, 1, 1, 3),
            "num_inf_nan": _cont(rng, nr, 0, 1, 3),
            "num_ninf_ref": _put(_cont(rng, nr, 0, 1, 3), rng, 3, -np.inf),
            "num_k3_inf": rng.choice([1.0, 2.0, 3.0], nr),
            "num_k2_inf": np.full(nr, 4.0),
            "cat": _cat(rng, nr, 1, 4),
            "prediction": _cont(rng, nr, 10, 2, 3),
        }
    )
    return dict(
        reference=ref,
        current=cur,
        mapping=_mapping(["num_q", "num_inf_nan", "num_ninf_ref", "num_k3_inf", "num_k2_inf"], ["cat"]),
    )


@synthetic(
    "missing_values_mix",
    110,
    "missing values over every column of the current frame: an all-null float column and an all-null (Arrow null "
    "type) column that are not drift columns, a string column with '' and null ('' counts, ' ' does not), a "
    "timestamp column with nulls, NaN in mapped columns; small reference (300 rows)",
)
def _missing_values_mix(rng):
    nr, nc = 300, 250
    ts0 = np.datetime64("2022-02-01T00:00:00", "us")

    def ts(n):
        t = ts0 + (rng.integers(0, 86_400, n) * 1_000_000).astype("timedelta64[us]")
        return pd.Series(t).astype("datetime64[us]")

    ref = pd.DataFrame(
        {
            "event_time": ts(nr),
            "flag": _strings(rng, nr, 0.05, 0.05),
            "num_a": _with_nulls(rng, _cont(rng, nr, 3, 1, 2), 0.1),
            "num_b": _cont(rng, nr, 7, 2, 2),
            "cat": _with_nulls(rng, _cat(rng, nr, 1, 6), 0.05),
            "all_null_float": np.full(nr, np.nan),
            "all_null_untyped": [None] * nr,
            "prediction": _cont(rng, nr, 9, 2, 3),
        }
    )
    cur_ts = ts(nc)
    cur_ts[rng.random(nc) < 0.04] = pd.NaT
    cur = pd.DataFrame(
        {
            "event_time": cur_ts,
            "flag": _strings(rng, nc, 0.12, 0.08),
            "num_a": _with_nulls(rng, _cont(rng, nc, 3, 1, 2), 0.2),
            "num_b": _cont(rng, nc, 7, 2, 2),
            "cat": _with_nulls(rng, _cat(rng, nc, 1, 6), 0.1),
            "all_null_float": np.full(nc, np.nan),
            "all_null_untyped": [None] * nc,
            "prediction": _with_nulls(rng, _cont(rng, nc, 9, 2, 3), 0.02),
        }
    )
    return dict(reference=ref, current=cur, mapping=_mapping(["num_a", "num_b"], ["cat"]))


@synthetic(
    "all_null_num_feature",
    111,
    "a numerical drift column that is all null in the current window: Evidently raises (empty column after cleaning)",
)
def _all_null_num_feature(rng):
    nr, nc = 1200, 300
    ref = pd.DataFrame(
        {
            "num_a": _cont(rng, nr, 3, 1, 2),
            "num_b": _cont(rng, nr, 5, 1, 2),
            "cat": _cat(rng, nr, 1, 4),
            "prediction": _cont(rng, nr, 9, 2, 3),
        }
    )
    cur = pd.DataFrame(
        {
            "num_a": _cont(rng, nc, 3, 1, 2),
            "num_b": np.full(nc, np.nan),
            "cat": _cat(rng, nc, 1, 4),
            "prediction": _cont(rng, nc, 9, 2, 3),
        }
    )
    return dict(reference=ref, current=cur, mapping=_mapping(["num_a", "num_b"], ["cat"]))


@synthetic(
    "all_null_cat_feature",
    112,
    "a categorical drift column that is all null in the current window (small reference): Evidently raises",
)
def _all_null_cat_feature(rng):
    nr, nc = 400, 200
    ref = pd.DataFrame(
        {
            "num_a": _cont(rng, nr, 3, 1, 2),
            "cat_a": _cat(rng, nr, 1, 4),
            "cat_b": _cat(rng, nr, 1, 4).astype(np.float64),
            "prediction": _cont(rng, nr, 9, 2, 3),
        }
    )
    cur = pd.DataFrame(
        {
            "num_a": _cont(rng, nc, 3, 1, 2),
            "cat_a": _cat(rng, nc, 1, 4),
            "cat_b": np.full(nc, np.nan),
            "prediction": _cont(rng, nc, 9, 2, 3),
        }
    )
    return dict(reference=ref, current=cur, mapping=_mapping(["num_a"], ["cat_a", "cat_b"]))


@synthetic(
    "prediction_int_few_values",
    113,
    "int64 prediction with 4 distinct values and a large reference (1500): categorical in both paths -> jensenshannon",
)
def _prediction_int_few_values(rng):
    nr, nc = 1500, 700
    ref = pd.DataFrame(
        {
            "num_a": _cont(rng, nr, 3, 1, 2),
            "cat": _cat(rng, nr, 1, 9),
            "prediction": _cat(rng, nr, 1, 4),
        }
    )
    cur = pd.DataFrame(
        {
            "num_a": _cont(rng, nc, 3, 1, 2),
            "cat": _cat(rng, nc, 1, 9),
            "prediction": _cat(rng, nc, 1, 4, p=[0.1, 0.2, 0.3, 0.4]),
        }
    )
    return dict(reference=ref, current=cur, mapping=_mapping(["num_a"], ["cat"]))


@synthetic(
    "prediction_few_values_paths_disagree",
    114,
    "float prediction with 4 distinct values (>1) in the 600-row reference but 7 in reference+current: the dataset path "
    "(distinct values of ref+cur) types it num -> ks, ColumnDriftMetric (distinct values of the reference) types it "
    "cat -> chisquare",
)
def _prediction_few_values_paths_disagree(rng):
    nr, nc = 600, 500
    ref = pd.DataFrame(
        {
            "num_a": _cont(rng, nr, 3, 1, 2),
            "cat": _cat(rng, nr, 1, 5),
            "prediction": rng.choice([1.0, 2.0, 3.0, 4.0], nr),
        }
    )
    cur = pd.DataFrame(
        {
            "num_a": _cont(rng, nc, 3, 1, 2),
            "cat": _cat(rng, nc, 1, 5),
            "prediction": rng.choice([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], nc),
        }
    )
    return dict(reference=ref, current=cur, mapping=_mapping(["num_a"], ["cat"]))


@synthetic(
    "prediction_probability_few_values",
    115,
    "float prediction with 3 distinct values inside [0,1] (a probability): stays num in both paths; small reference "
    "-> chisquare on a numerical column",
)
def _prediction_probability_few_values(rng):
    nr, nc = 500, 500
    ref = pd.DataFrame(
        {
            "num_a": _cont(rng, nr, 3, 1, 2),
            "cat": _cat(rng, nr, 1, 5),
            "prediction": rng.choice([0.0, 0.5, 1.0], nr, p=[0.5, 0.3, 0.2]),
        }
    )
    cur = pd.DataFrame(
        {
            "num_a": _cont(rng, nc, 3.2, 1, 2),
            "cat": _cat(rng, nc, 1, 5),
            "prediction": rng.choice([0.0, 0.5, 1.0], nc, p=[0.4, 0.3, 0.3]),
        }
    )
    return dict(reference=ref, current=cur, mapping=_mapping(["num_a"], ["cat"]))


def _tiny_ref(rng, nr):
    return pd.DataFrame(
        {
            "num_a": _cont(rng, nr, 3, 1, 2),
            "num_k2": rng.choice([0.0, 1.0], nr),
            "cat": _cat(rng, nr, 1, 6),
            "prediction": _cont(rng, nr, 9, 2, 3),
        }
    )


@synthetic(
    "single_row_current",
    116,
    "a 1-row current window against a 300-row reference: ks exact with n_c=1, z on num k=2, chisquare on cat",
)
def _single_row_current(rng):
    ref = _tiny_ref(rng, 300)
    cur = pd.DataFrame({"num_a": [4.25], "num_k2": [1.0], "cat": np.array([3], dtype=np.int64), "prediction": [11.5]})
    return dict(reference=ref, current=cur, mapping=_mapping(["num_a", "num_k2"], ["cat"]))


@synthetic(
    "empty_current",
    117,
    "a 0-row current window: Evidently raises (empty prediction column)",
)
def _empty_current(rng):
    ref = _tiny_ref(rng, 300)
    return dict(reference=ref, current=ref.iloc[:0].copy(), mapping=_mapping(["num_a", "num_k2"], ["cat"]))


def _write_parquet(df: pd.DataFrame, path: str) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    # columns that are entirely None become Arrow's null type (like ehail_fee in the TLC files)
    pq.write_table(table, path, compression=PARQUET_COMPRESSION)


def synthetic_cases(out_dir: str, only: Optional[List[str]] = None) -> List[Dict[str, Any]]:
    base = os.path.join(out_dir, "synthetic")
    cases = []
    for name, seed, description, fn in SYNTHETIC:
        if only and name not in only:
            continue
        spec = fn(np.random.default_rng(seed))
        case_dir = os.path.join(base, name)
        os.makedirs(case_dir, exist_ok=True)
        ref_path = os.path.join(case_dir, "reference.parquet")
        cur_path = os.path.join(case_dir, "current.parquet")
        _write_parquet(spec["reference"], ref_path)
        _write_parquet(spec["current"], cur_path)
        # Evidently sees exactly what the Rust side reads back
        reference = pd.read_parquet(ref_path)
        current = pd.read_parquet(cur_path)
        mapping = spec["mapping"]
        quantile_column = mapping["numerical_features"][0]
        expected, error = evaluate(reference, current, mapping, quantile_column)
        rel = f"{GOLDEN_DIR}/synthetic/{name}"
        cases.append(
            {
                "name": name,
                "description": description,
                "reference": f"{rel}/reference.parquet",
                "current": f"{rel}/current.parquet",
                "score_current_with": None,
                "time_column": None,
                "start": None,
                "end": None,
                "column_mapping": mapping,
                "expected": expected,
                "expected_error": error,
            }
        )
        size = os.path.getsize(ref_path) + os.path.getsize(cur_path)
        if expected is None:
            print(f"  {name}: expected_error={error!r} ({size} bytes)")
        else:
            tests = ", ".join(f"{c['column']}={c['stattest']}:{c['drift_score']!r}" for c in expected["columns"])
            pd_ = expected["prediction_drift"]
            print(
                f"  {name}: rows={expected['row_count']} missing={expected['number_of_missing_values']} "
                f"drifted={expected['number_of_drifted_columns']}/{len(expected['columns'])} "
                f"pred={pd_['column_type']}/{pd_['stattest']}:{pd_['drift_score']!r} q50={expected['quantiles'][0]['value']!r} "
                f"({size} bytes)\n      {tests}"
            )
    return cases


# --------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", default=REF_PATH, help="reference parquet to read (JSON always records %(default)s)")
    ap.add_argument("--current", default=CUR_PATH, help="February TLC parquet to read")
    ap.add_argument("--model", default=MODEL_PATH, help="model JSON to score the windows with")
    ap.add_argument("--out-dir", default=GOLDEN_DIR)
    ap.add_argument("--only", choices=["all", "daily", "windows", "synthetic"], default="all")
    ap.add_argument("--workers", type=int, default=2, help="processes for the hourly/sliding windows")
    args = ap.parse_args(argv)

    gen = generator_info()
    print("generator:", gen)
    if args.only in ("all", "daily"):
        if (args.reference, args.model) != (REF_PATH, MODEL_PATH):
            print(f"NOTE: reading {args.reference} and {args.model}; the JSON records {REF_PATH} and {MODEL_PATH}")
        print("February daily cases:")
        cases = feb_cases(args.reference, args.current, args.model)
        write_json(os.path.join(args.out_dir, "feb-2022-daily.json"), {"generator": gen, "cases": cases})
    if args.only in ("all", "windows"):
        if (args.reference, args.model) != (REF_PATH, MODEL_PATH):
            print(f"NOTE: reading {args.reference} and {args.model}; the JSON records {REF_PATH} and {MODEL_PATH}")
        print("February hourly and 1d/1h sliding windows:")
        by_file = window_cases(args.reference, args.current, args.model, args.workers)
        for fname, cases in by_file.items():
            path = os.path.join(args.out_dir, fname)
            write_json_compact(path, {"generator": gen, "cases": cases})
            print(f"  {window_summary(fname, cases)}; {os.path.getsize(path)} bytes")
    if args.only in ("all", "synthetic"):
        syn_dir = os.path.join(args.out_dir, "synthetic")
        if os.path.isdir(syn_dir):
            shutil.rmtree(syn_dir)
        print("Synthetic cases:")
        cases = synthetic_cases(args.out_dir)
        write_json(os.path.join(args.out_dir, "synthetic.json"), {"generator": gen, "cases": cases})
    return 0


if __name__ == "__main__":
    sys.exit(main())
