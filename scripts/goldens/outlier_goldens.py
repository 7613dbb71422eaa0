#!/usr/bin/env python3
"""Golden values for the monitor's outlier shares, computed with NumPy.

Writes (relative to the repo root, which must be the working directory):
  tests/golden/feb-2022-outliers.json    one case per day 2022-02-01 .. 2022-02-28

Run it through scripts/goldens/make_goldens.sh --only outliers (the pinned venv of
requirements.txt). The windows are those of feb-2022-daily.json, built by the same code
(imported from evidently_goldens.py): the raw February rows with lpep_pickup_datetime in
[day, day+1), scored with models/trip-duration-linear.json as the Rust scorer does it,
against data/reference.parquet.

Definitions (monitor/src/outliers.rs):
- per numerical column and the (numerical) prediction, the reference bounds are
  np.quantile(lower), np.quantile(upper) (numpy's default 'linear' method; 0.01 and 0.99
  unless --outlier-quantiles says otherwise) and the IQR fences Q1 - 1.5 * IQR and
  Q3 + 1.5 * IQR with Q1, Q3 = np.quantile(0.25), np.quantile(0.75), IQR = Q3 - Q1, all on the
  reference's finite values;
- a window value is outside when strictly below the lower or strictly above the upper bound;
- null, NaN and +-inf are missing cells: they are neither outliers nor in the denominator,
  which is the window's count of finite values (`values`); a share is null when that is 0.
"""
from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from evidently_goldens import (  # noqa: E402
    COURSE_MAPPING,
    CUR_PATH,
    GOLDEN_DIR,
    MODEL_PATH,
    REF_PATH,
    TIME_COLUMN,
    daily_windows,
    load_model,
    score,
    time_window_case,
    write_json,
)

OUTPUT = "feb-2022-outliers.json"
IQR_FACTOR = 1.5


def columns(mapping: Dict[str, Any]) -> List[str]:
    """The monitor's order: the prediction, then the numerical features as mapped."""
    return [mapping["prediction"], *mapping["numerical_features"]]


def finite_values(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = frame[column].astype("float64").to_numpy(dtype=np.float64)
    return values[np.isfinite(values)]


def reference_bounds(values: np.ndarray, lower_q: float, upper_q: float) -> Dict[str, Any]:
    assert len(values) > 0, "a column without finite reference values has no range"
    q1 = np.quantile(values, 0.25)
    q3 = np.quantile(values, 0.75)
    iqr = q3 - q1
    return {
        "lower_quantile": lower_q,
        "upper_quantile": upper_q,
        "lower_bound": np.quantile(values, lower_q),
        "upper_bound": np.quantile(values, upper_q),
        "q1": q1,
        "q3": q3,
        "iqr_lower_fence": q1 - IQR_FACTOR * iqr,
        "iqr_upper_fence": q3 + IQR_FACTOR * iqr,
        "values": len(values),
    }


def outside(values: np.ndarray, lower: float, upper: float) -> Tuple[int, Optional[float]]:
    count = int(np.count_nonzero((values < lower) | (values > upper)))
    return count, (count / len(values) if len(values) else None)


def window_outliers(
    window: pd.DataFrame, bounds: Dict[str, Dict[str, Any]], names: List[str]
) -> List[Dict[str, Any]]:
    result = []
    for column in names:
        b = bounds[column]
        values = finite_values(window, column)
        n_q, share_q = outside(values, b["lower_bound"], b["upper_bound"])
        n_iqr, share_iqr = outside(values, b["iqr_lower_fence"], b["iqr_upper_fence"])
        result.append(
            {
                "column": column,
                "lower_quantile": b["lower_quantile"],
                "upper_quantile": b["upper_quantile"],
                "lower_bound": b["lower_bound"],
                "upper_bound": b["upper_bound"],
                "iqr_lower_fence": b["iqr_lower_fence"],
                "iqr_upper_fence": b["iqr_upper_fence"],
                "values": len(values),
                "outside_quantiles": n_q,
                "share_outside_quantiles": share_q,
                "outside_iqr": n_iqr,
                "share_outside_iqr": share_iqr,
            }
        )
    return result


def feb_outlier_cases(
    ref_file: str, cur_file: str, model_file: str, lower_q: float, upper_q: float
) -> Tuple[Dict[str, Dict[str, Any]], List[Dict[str, Any]]]:
    reference = pd.read_parquet(ref_file)
    raw = pd.read_parquet(cur_file)
    model = load_model(model_file)
    names = columns(COURSE_MAPPING)
    bounds = {c: reference_bounds(finite_values(reference, c), lower_q, upper_q) for c in names}
    cases = []
    for start, end in daily_windows(datetime(2022, 2, 1), 28):
        window = raw[(raw[TIME_COLUMN] >= start) & (raw[TIME_COLUMN] < end)].copy()
        window["prediction"] = score(window, model)
        expected = {"row_count": len(window), "outliers": window_outliers(window, bounds, names)}
        cases.append(time_window_case(start.strftime("%Y-%m-%d"), start, end, expected, None))
        shares = " ".join(
            f"{o['column']}={o['outside_quantiles']}/{o['outside_iqr']}/{o['values']}"
            for o in expected["outliers"]
        )
        print(f"  {start:%Y-%m-%d}: rows={len(window):5d} outside q/iqr/values: {shares}")
    return bounds, cases


def generator_info() -> Dict[str, str]:
    import platform

    return {"pandas": pd.__version__, "numpy": np.__version__, "python": platform.python_version()}


def parse_range(text: str) -> Tuple[float, float]:
    parts = [float(p) for p in text.split(",")]
    if len(parts) != 2 or not (0.0 <= parts[0] < parts[1] <= 1.0):
        raise argparse.ArgumentTypeError(f"{text!r}: want lower,upper with 0 <= lower < upper <= 1")
    return parts[0], parts[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", default=REF_PATH, help="reference parquet to read (JSON always records %(default)s)")
    ap.add_argument("--current", default=CUR_PATH, help="February TLC parquet to read")
    ap.add_argument("--model", default=MODEL_PATH, help="model JSON to score the windows with")
    ap.add_argument("--out-dir", default=GOLDEN_DIR)
    ap.add_argument(
        "--outlier-quantiles", type=parse_range, default=(0.01, 0.99), help="lower,upper (default 0.01,0.99)"
    )
    args = ap.parse_args(argv)

    if (args.reference, args.model) != (REF_PATH, MODEL_PATH):
        print(f"NOTE: reading {args.reference} and {args.model}; the JSON records {REF_PATH} and {MODEL_PATH}")
    lower_q, upper_q = args.outlier_quantiles
    print(f"February daily outliers (quantiles {lower_q}..{upper_q}, IQR fences):")
    bounds, cases = feb_outlier_cases(args.reference, args.current, args.model, lower_q, upper_q)
    doc = {
        "generator": generator_info(),
        "outlier_quantiles": [lower_q, upper_q],
        "reference_bounds": bounds,
        "cases": cases,
    }
    path = os.path.join(args.out_dir, OUTPUT)
    write_json(path, doc)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
