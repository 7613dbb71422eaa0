#!/usr/bin/env bash
# The main job: replay the bundled February 2022 through producer -> scorer -> monitor ->
# sink into PostgreSQL, then print the daily table and where to look.
#
#   scripts/demo.sh                 # local broker and PostgreSQL from scripts/services.sh
#   KAFKA_BROKERS=... DATABASE_URL=... scripts/demo.sh   # your own Kafka and PostgreSQL
#
# The monitor runs the shipped spec examples/specs/taxi.toml (daily windows, pickup-borough and
# zone segments, the model's contributions, an alert rule) and joins the trips' completions for
# model performance. At the end `sink report` writes an HTML report of the month.
#
# Settings: DEMO_SPEED (producer speed factor, 0 = as fast as possible; default 0),
# DEMO_SPEC (monitoring spec; default examples/specs/taxi.toml), DEMO_TIMEOUT (seconds to wait;
# default 300).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/streamwatch/target}"
SPEED=${DEMO_SPEED:-0}
SPEC=${DEMO_SPEC:-examples/specs/taxi.toml}
TIMEOUT=${DEMO_TIMEOUT:-300}

say() { printf '==> %s\n' "$*" >&2; }

say "starting local services (skipped for those you point at with KAFKA_BROKERS / DATABASE_URL)"
eval "$(scripts/services.sh up)"
export KAFKA_BROKERS DATABASE_URL

say "building the four binaries (release)"
cargo build --release --locked --bins -q
BIN="$CARGO_TARGET_DIR/release"

RUN="demo-$(date +%Y%m%d%H%M%S)"
START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOGS="${STREAMWATCH_CACHE:-$HOME/.cache/streamwatch}/logs/$RUN"
mkdir -p "$LOGS"
TRIPS="$RUN.trips" SCORED="$RUN.trips.scored" METRICS="$RUN.metrics" DLQ="$RUN.deadletter"
COMPLETIONS="$RUN.completions"

PIDS=()
stop_stages() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_stages EXIT

say "run $RUN: stage logs in $LOGS"
"$BIN/sink" run --topic "$METRICS" --dead-letter-topic "$DLQ" --group "$RUN-sink" \
  --database-url "$DATABASE_URL" >"$LOGS/sink.log" 2>&1 & PIDS+=($!)
"$BIN/monitor" run --input-topic "$SCORED" --output-topic "$METRICS" --dead-letter-topic "$DLQ" \
  --group "$RUN-monitor" --spec "$SPEC" --completions-topic "$COMPLETIONS" \
  --idle-timeout 3s >"$LOGS/monitor.log" 2>&1 & PIDS+=($!)
"$BIN/scorer" run --input-topic "$TRIPS" --output-topic "$SCORED" --dead-letter-topic "$DLQ" \
  --group "$RUN-scorer" --model models/trip-duration-linear.json >"$LOGS/scorer.log" 2>&1 & PIDS+=($!)

say "replaying data/green_tripdata_2022-02.parquet (February 2022) at speed $SPEED"
"$BIN/producer" replay --file data/green_tripdata_2022-02.parquet --from 2022-02-01 --to 2022-03-01 \
  --topic "$TRIPS" --completions-topic "$COMPLETIONS" --speed "$SPEED"

say "waiting for the 28 daily rows, with their model performance, in PostgreSQL (up to ${TIMEOUT}s)"
deadline=$((SECONDS + TIMEOUT))
query="SELECT least(
         (SELECT count(*) FROM window_metrics WHERE monitor = 'taxi' AND window_kind = 'tumbling'
            AND window_size_seconds = 86400 AND window_start >= '2022-02-01' AND window_start < '2022-03-01'
            AND emitted_at >= '$START'),
         (SELECT count(*) FROM window_performance WHERE monitor = 'taxi' AND window_kind = 'tumbling'
            AND window_size_seconds = 86400 AND window_start >= '2022-02-01' AND window_start < '2022-03-01'
            AND emitted_at >= '$START'))"
until [ "$(psql "$DATABASE_URL" -Atc "$query" 2>/dev/null || echo 0)" -ge 28 ]; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    say "timed out; see the logs in $LOGS"; exit 1
  fi
  sleep 1
done
sleep 2 # let the sink store the last revision

psql "$DATABASE_URL" -P pager=off -c "
SELECT d.\"timestamp\"::date AS day, w.row_count AS trips, round(d.prediction_drift::numeric, 6) AS prediction_drift,
       d.num_drifted_columns, round(d.share_missing_values::numeric, 6) AS share_missing_values,
       w.dataset_drift, q.value AS median_fare, p.labelled_rows AS labelled, round(p.mae::numeric, 3) AS mae,
       round(p.rmse::numeric, 3) AS rmse, p.worst_segment, round(p.worst_mae_ratio::numeric, 3) AS worst_mae_ratio
FROM dummy_metrics d
JOIN window_metrics w ON w.window_kind = 'tumbling' AND w.window_size_seconds = 86400 AND w.window_start = d.\"timestamp\"
LEFT JOIN window_performance p ON p.monitor = w.monitor AND p.window_kind = w.window_kind
     AND p.window_size_seconds = w.window_size_seconds AND p.window_start = w.window_start
LEFT JOIN column_quantiles q ON q.monitor = w.monitor AND q.window_kind = w.window_kind
     AND q.window_size_seconds = w.window_size_seconds AND q.window_step_seconds = w.window_step_seconds
     AND q.window_start = w.window_start AND q.column_name = 'fare_amount' AND q.quantile = 0.5
WHERE d.\"timestamp\" >= '2022-02-01' AND d.\"timestamp\" < '2022-03-01'
ORDER BY 1"

REPORT="$LOGS/report.html"
"$BIN/sink" report --database-url "$DATABASE_URL" --monitor taxi --window 1d \
  --from 2022-02-01 --to 2022-03-01 --output "$REPORT" >/dev/null

cat <<INFO
Where to look:
  Report       $REPORT (self-contained HTML: drift, quality, performance, fairness, alerts)
  PostgreSQL   $DATABASE_URL
               tables window_metrics, column_drift, column_quantiles, column_outliers,
               window_performance, segment_performance, feature_contributions, alerts,
               late_events; course view dummy_metrics
  Grafana      docker compose up grafana (dashboards in grafana/dashboards, datasource uid streamwatch-postgres)
  Stage logs   $LOGS
INFO
