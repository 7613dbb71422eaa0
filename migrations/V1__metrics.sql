-- Metric rows published by the monitor on topic `metrics`, upserted by the sink.
-- Window timestamps are naive (`timestamp without time zone`), like the TLC trip times.

CREATE TABLE window_metrics (
    monitor                   text             NOT NULL CHECK (monitor <> ''),
    window_kind               text             NOT NULL CHECK (window_kind IN ('tumbling', 'sliding')),
    window_size_seconds       bigint           NOT NULL CHECK (window_size_seconds > 0),
    window_step_seconds       bigint           NOT NULL CHECK (window_step_seconds > 0),
    window_start              timestamp        NOT NULL,
    window_end                timestamp        NOT NULL,
    -- Grows each time the monitor emits the window again; the sink keeps the highest.
    revision                  bigint           NOT NULL CHECK (revision >= 0),
    row_count                 bigint           NOT NULL CHECK (row_count >= 0),
    number_of_columns         bigint           NOT NULL CHECK (number_of_columns >= 0),
    number_of_missing_values  bigint           NOT NULL CHECK (number_of_missing_values >= 0),
    share_of_missing_values   double precision,
    -- The prediction column's drift test (NULL score: undefined, or no test in this window).
    prediction_drift          double precision,
    prediction_stattest       text,
    prediction_threshold      double precision,
    prediction_drift_detected boolean,
    number_of_drifted_columns bigint           NOT NULL CHECK (number_of_drifted_columns >= 0),
    share_of_drifted_columns  double precision NOT NULL,
    dataset_drift             boolean          NOT NULL,
    emitted_at                timestamptz      NOT NULL,
    stored_at                 timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (monitor, window_kind, window_size_seconds, window_step_seconds, window_start),
    CHECK (window_end > window_start)
);

-- Dashboards select one window shape over a time range, across monitors.
CREATE INDEX window_metrics_shape_start
    ON window_metrics (window_kind, window_size_seconds, window_start);

CREATE TABLE column_drift (
    monitor             text             NOT NULL,
    window_kind         text             NOT NULL,
    window_size_seconds bigint           NOT NULL,
    window_step_seconds bigint           NOT NULL,
    window_start        timestamp        NOT NULL,
    column_name         text             NOT NULL,
    -- `num` or `cat`, as Evidently names them.
    column_type         text             NOT NULL,
    stattest            text             NOT NULL,
    threshold           double precision NOT NULL,
    -- p-value or distance; NULL when the test is undefined.
    score               double precision,
    drift_detected      boolean          NOT NULL,
    reference_rows      bigint           NOT NULL CHECK (reference_rows >= 0),
    current_rows        bigint           NOT NULL CHECK (current_rows >= 0),
    -- Why the test could not run, if it could not.
    error               text,
    PRIMARY KEY (monitor, window_kind, window_size_seconds, window_step_seconds, window_start, column_name),
    FOREIGN KEY (monitor, window_kind, window_size_seconds, window_step_seconds, window_start)
        REFERENCES window_metrics ON DELETE CASCADE
);

CREATE INDEX column_drift_shape_start
    ON column_drift (window_kind, window_size_seconds, window_start);

CREATE TABLE column_quantiles (
    monitor             text             NOT NULL,
    window_kind         text             NOT NULL,
    window_size_seconds bigint           NOT NULL,
    window_step_seconds bigint           NOT NULL,
    window_start        timestamp        NOT NULL,
    column_name         text             NOT NULL,
    quantile            double precision NOT NULL CHECK (quantile >= 0 AND quantile <= 1),
    -- NULL when the window has no value for the column.
    value               double precision,
    PRIMARY KEY (monitor, window_kind, window_size_seconds, window_step_seconds, window_start, column_name, quantile),
    FOREIGN KEY (monitor, window_kind, window_size_seconds, window_step_seconds, window_start)
        REFERENCES window_metrics ON DELETE CASCADE
);

-- The course's table, as a view over daily tumbling windows, so its dashboard keeps working.
CREATE VIEW dummy_metrics AS
SELECT window_start                       AS "timestamp",
       prediction_drift,
       number_of_drifted_columns::integer AS num_drifted_columns,
       share_of_missing_values            AS share_missing_values
FROM window_metrics
WHERE window_kind = 'tumbling' AND window_size_seconds = 86400;

-- Daily windows with the homework's median fare.
CREATE VIEW daily_metrics AS
SELECT w.monitor,
       w.window_start                       AS "timestamp",
       w.row_count,
       w.prediction_drift,
       w.number_of_drifted_columns::integer AS num_drifted_columns,
       w.share_of_missing_values            AS share_missing_values,
       q.value                              AS quantile_50
FROM window_metrics w
LEFT JOIN column_quantiles q
       ON q.monitor = w.monitor
      AND q.window_kind = w.window_kind
      AND q.window_size_seconds = w.window_size_seconds
      AND q.window_step_seconds = w.window_step_seconds
      AND q.window_start = w.window_start
      AND q.column_name = 'fare_amount'
      AND q.quantile = 0.5
WHERE w.window_kind = 'tumbling' AND w.window_size_seconds = 86400;

-- A read-only role for Grafana. Roles are cluster-wide: another database on this server may have
-- created it already (or be creating it right now), and the migrating user may lack CREATEROLE;
-- neither must fail the migration. Give it LOGIN and a password, or grant it to a login role.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'streamwatch_grafana') THEN
        BEGIN
            CREATE ROLE streamwatch_grafana NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL; -- created concurrently from another database
            WHEN insufficient_privilege THEN
                RAISE WARNING 'role streamwatch_grafana not created: % lacks CREATEROLE', current_user;
        END;
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'streamwatch_grafana') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO streamwatch_grafana', current_schema());
        GRANT SELECT ON window_metrics, column_drift, column_quantiles, dummy_metrics, daily_metrics
            TO streamwatch_grafana;
    END IF;
END
$$;
