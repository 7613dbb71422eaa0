#!/usr/bin/env python3
"""Times Evidently's legacy Report.run (the golden metrics) to compare with the Rust engine.

Current windows, against data/reference.parquet:
  * each February 2022 day (28 windows, as in tests/golden/feb-2022-daily.json);
  * 10k, 100k and 1M rows sampled with replacement (numpy default_rng(20220201)) from the February rows
    with lpep_pickup_datetime in [2022-02-01, 2022-03-01).
Every window is scored with models/trip-duration-linear.json first (not timed); the time is report.run alone,
after one untimed warm-up run and a gc.collect(). Wall seconds are the headline numbers; process CPU
seconds are recorded too (BLAS may use 2 threads in np.corrcoef, so CPU can exceed wall; wall >> CPU means
another process competed for the cores). Writes tests/golden/evidently-timings.json and prints a table.
Run it through `scripts/goldens/make_goldens.sh --bench` (or --bench-only).
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from datetime import datetime

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evidently_goldens as g  # noqa: E402

SAMPLE_SIZES = (10_000, 100_000, 1_000_000)
SAMPLE_SEED = 20220201


def time_run(reference: pd.DataFrame, current: pd.DataFrame):
    """(wall seconds, process CPU seconds) of one report.run."""
    metrics = g.make_metrics(g.COURSE_MAPPING, "fare_amount")
    report = g.Report(metrics=metrics)
    mapping = g.column_mapping(g.COURSE_MAPPING)
    gc.collect()  # the previous report's garbage is not this run's cost (else the times alternate ~0.2 / ~0.4 s)
    c0, t0 = time.process_time(), time.perf_counter()
    report.run(reference_data=reference, current_data=current, column_mapping=mapping)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    metrics[1].get_result()  # make sure it did not fail silently
    return elapsed, cpu


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_info():
    try:
        import threadpoolctl

        return [
            {k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for d in threadpoolctl.threadpool_info()
        ]
    except Exception:  # pragma: no cover
        return []


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", default=g.REF_PATH)
    ap.add_argument("--current", default=g.CUR_PATH)
    ap.add_argument("--model", default=g.MODEL_PATH)
    ap.add_argument("--out-dir", default=g.GOLDEN_DIR)
    ap.add_argument("--repeats", type=int, default=3, help="runs per sampled size below 1M (median kept)")
    ap.add_argument("--only", help=argparse.SUPPRESS)  # accepted (and ignored) for make_goldens.sh symmetry
    args = ap.parse_args(argv)

    reference = pd.read_parquet(args.reference)
    raw = pd.read_parquet(args.current)
    model = g.load_model(args.model)
    t = raw[g.TIME_COLUMN]
    feb = raw[(t >= datetime(2022, 2, 1)) & (t < datetime(2022, 3, 1))].reset_index(drop=True)
    feb["prediction"] = g.score(feb, model)

    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        print(f"warning: load average {load_before[0]:.2f} before the benchmark; timings may be inflated", file=sys.stderr)
    windows = list(g.daily_windows(datetime(2022, 2, 1), 28))
    first = feb[(feb[g.TIME_COLUMN] >= windows[0][0]) & (feb[g.TIME_COLUMN] < windows[0][1])]
    time_run(reference, first)  # warm-up (imports, caches)

    print(f"reference rows: {len(reference)}; February rows: {len(feb)}; cores: {os.cpu_count()}")
    print(f"{'window':>12} {'rows':>9} {'seconds':>9} {'cpu s':>9}")
    daily, daily_cpu = [], []
    for start, end in windows:
        cur = feb[(feb[g.TIME_COLUMN] >= start) & (feb[g.TIME_COLUMN] < end)]
        s, c = time_run(reference, cur)
        daily.append(s)
        daily_cpu.append(c)
        print(f"{start:%Y-%m-%d} {len(cur):9d} {s:9.3f} {c:9.3f}")
    daily_mean = statistics.fmean(daily)
    print(f"{'daily mean':>12} {'':>9} {daily_mean:9.3f} {statistics.fmean(daily_cpu):9.3f}   (total {sum(daily):.2f} s)")

    rng = np.random.default_rng(SAMPLE_SEED)
    sized = {}
    for n in SAMPLE_SIZES:
        cur = feb.iloc[rng.integers(0, len(feb), size=n)].reset_index(drop=True)
        repeats = args.repeats if n < 1_000_000 else 1
        pairs = [time_run(reference, cur) for _ in range(repeats)]
        runs = [w for w, _ in pairs]
        cpus = [c for _, c in pairs]
        sized[n] = (statistics.median(runs), runs, statistics.median(cpus))
        print(f"{'sample':>12} {n:9d} {sized[n][0]:9.3f} {sized[n][2]:9.3f}   runs: {', '.join(f'{r:.3f}' for r in runs)}")

    doc = {
        "what": "seconds of evidently legacy Report.run with ColumnDriftMetric(prediction), DatasetDriftMetric, "
        "DatasetMissingValuesMetric, DataDriftTable, ColumnQuantileMetric(fare_amount, 0.5) against "
        f"{g.REF_PATH} ({len(reference)} rows); current windows scored beforehand (not timed); one warm-up run; "
        "gc.collect() before each timed run",
        "daily_seconds": daily,
        "daily_rows": [
            int(((feb[g.TIME_COLUMN] >= s) & (feb[g.TIME_COLUMN] < e)).sum()) for s, e in windows
        ],
        "daily_mean_seconds": daily_mean,
        "daily_cpu_seconds": daily_cpu,
        "daily_mean_cpu_seconds": statistics.fmean(daily_cpu),
        "rows_10000": sized[10_000][0],
        "rows_100000": sized[100_000][0],
        "rows_1000000": sized[1_000_000][0],
        "rows_10000_cpu_seconds": sized[10_000][2],
        "rows_100000_cpu_seconds": sized[100_000][2],
        "rows_1000000_cpu_seconds": sized[1_000_000][2],
        "sampled_runs": {str(n): v[1] for n, v in sized.items()},
        "sampling": f"with replacement from the {len(feb)} February 2022 rows, numpy default_rng({SAMPLE_SEED}).integers",
        "machine": f"{os.cpu_count()} cores, {cpu_model()}",
        "blas": blas_info(),
        "loadavg_1min_before_after": [load_before[0], os.getloadavg()[0]],
        "generator": g.generator_info(),
        "measured_at": datetime.now().strftime("%Y-%m-%dT%H:%M:%S"),
    }
    path = os.path.join(args.out_dir, "evidently-timings.json")
    g.write_json(path, doc)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
