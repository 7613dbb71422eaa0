#!/usr/bin/env python3
"""Golden values from Evidently's legacy Report per pickup borough (segment drift).

Writes tests/golden/feb-2022-segments.json: for each daily window of February 2022 (the windows,
scoring and reference of feb-2022-daily.json, imported from evidently_goldens.py) and each pickup
borough, Evidently's numbers on the current window and the reference both filtered to that
borough: the same report as the daily cases (ColumnDriftMetric on the prediction,
DatasetDriftMetric, DatasetMissingValuesMetric, DataDriftTable; the same ColumnMapping), run by
evidently_goldens.evaluate.

The borough of a row is its PULocationID looked up in data/taxi_zone_lookup.csv (key LocationID,
value Borough, read as plain text like the monitor's CSV reader: no "NA" guessing). A missing
PULocationID is the segment "(missing)", an id the table lacks "(unmapped)" (monitor/src/segments.rs).
Segments are those with rows in the window or in the reference; one with fewer than
SEGMENT_MIN_ROWS (30, the spec's segment_min_rows) rows on either side is `too_small`: only its
counts (and the window's missing values when it has rows) are recorded, no report is run.

    scripts/goldens/make_goldens.sh --only segments
"""
from __future__ import annotations

import csv
import os
import sys
from datetime import datetime
from typing import Any, Dict, List, Optional

import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from evidently_goldens import (  # noqa: E402
    COURSE_MAPPING,
    CUR_PATH,
    GOLDEN_DIR,
    MODEL_PATH,
    REF_PATH,
    TIME_COLUMN,
    DatasetMissingValuesMetric,
    Report,
    column_mapping,
    daily_windows,
    evaluate,
    generator_info,
    load_model,
    score,
    time_window_case,
    write_json,
)

OUTPUT = "feb-2022-segments.json"
LOOKUP_PATH = "data/taxi_zone_lookup.csv"
SEGMENT_COLUMN = "PULocationID"
LOOKUP_KEY = "LocationID"
LOOKUP_VALUE = "Borough"
DIMENSION = "pickup_borough"
SEGMENT_MIN_ROWS = 30
MISSING = "(missing)"
UNMAPPED = "(unmapped)"


def read_lookup(path: str) -> Dict[str, str]:
    with open(path, newline="") as fh:
        return {row[LOOKUP_KEY]: row[LOOKUP_VALUE] for row in csv.DictReader(fh)}


def _key(value: Any) -> Optional[str]:
    """The monitor's text of a column value: integers without a fraction (`74`), else the float."""
    if value is None or pd.isna(value):
        return None
    v = float(value)
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def segments_of(frame: pd.DataFrame, table: Dict[str, str]) -> pd.Series:
    def name(value: Any) -> str:
        key = _key(value)
        if key is None:
            return MISSING
        return table.get(key, UNMAPPED)

    return frame[SEGMENT_COLUMN].map(name).astype(object)


def missing_values(current: pd.DataFrame) -> Dict[str, Any]:
    """DatasetMissingValuesMetric alone on a window segment too small for the drift report."""
    metric = DatasetMissingValuesMetric()
    Report(metrics=[metric]).run(
        reference_data=None, current_data=current, column_mapping=column_mapping(COURSE_MAPPING)
    )
    result = metric.get_result().current
    return {
        "number_of_columns": int(result.number_of_columns),
        "number_of_missing_values": int(result.number_of_missing_values),
        "share_of_missing_values": float(result.share_of_missing_values),
    }


def segment_cases(ref_file: str, cur_file: str, model_file: str) -> List[Dict[str, Any]]:
    table = read_lookup(LOOKUP_PATH)
    reference = pd.read_parquet(ref_file)
    raw = pd.read_parquet(cur_file)
    model = load_model(model_file)
    ref_segments = segments_of(reference, table)
    cases = []
    for start, end in daily_windows(datetime(2022, 2, 1), 28):
        window = raw[(raw[TIME_COLUMN] >= start) & (raw[TIME_COLUMN] < end)].copy()
        window["prediction"] = score(window, model)
        cur_segments = segments_of(window, table)
        names = sorted(set(cur_segments) | set(ref_segments))
        day = start.strftime("%Y-%m-%d")
        for segment in names:
            current = window[(cur_segments == segment).to_numpy()]
            ref = reference[(ref_segments == segment).to_numpy()]
            case = time_window_case(f"{day}/{segment}", start, end, None, None)
            case.update(dimension=DIMENSION, segment=segment, row_count=len(current), reference_rows=len(ref))
            too_small = len(current) < SEGMENT_MIN_ROWS or len(ref) < SEGMENT_MIN_ROWS
            case["too_small"] = too_small
            if too_small:
                # Counts only; the missing values as DatasetMissingValuesMetric would count them.
                if len(current) > 0:
                    case.update(missing_values(current))
                status = "too small"
            else:
                expected, error = evaluate(ref, current, COURSE_MAPPING, "fare_amount")
                if expected is not None:
                    del expected["quantiles"]  # not reported per segment
                    status = (
                        f"pred={expected['prediction_drift']['stattest']}:"
                        f"{expected['prediction_drift']['drift_score']!r} "
                        f"drifted={expected['number_of_drifted_columns']} "
                        + ",".join(c["stattest"] for c in expected["columns"])
                    )
                else:
                    status = f"ERROR {error}"
                case["expected"] = expected
                case["expected_error"] = error
            print(f"  {case['name']}: rows={len(current)} reference={len(ref)} {status}")
            cases.append(case)
    return cases


def main() -> int:
    gen = generator_info()
    print("generator:", gen)
    print("February daily cases per pickup borough:")
    cases = segment_cases(REF_PATH, CUR_PATH, MODEL_PATH)
    tested = sum(not c["too_small"] for c in cases)
    print(f"  {len(cases)} (day, borough) cases, {tested} tested, {len(cases) - tested} too small")
    write_json(
        os.path.join(GOLDEN_DIR, OUTPUT),
        {
            "description": "Evidently's legacy report (the cases of feb-2022-daily.json) per February 2022 day and "
            "pickup borough, on the window and the reference both filtered to the borough "
            "(PULocationID through the lookup table). Segments with fewer than segment_min_rows rows in the "
            "window or the reference are too_small: counts and missing values only.",
            "generator": gen,
            "lookup": {"path": LOOKUP_PATH, "key": LOOKUP_KEY, "value": LOOKUP_VALUE},
            "dimension": DIMENSION,
            "segment_column": SEGMENT_COLUMN,
            "segment_min_rows": SEGMENT_MIN_ROWS,
            "cases": cases,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
