-- Model performance per window, once completions brought the target (`"record": "performance"`).
-- A labelled row belongs to the window of its prediction's event time.

CREATE TABLE window_performance (
    monitor               text             NOT NULL CHECK (monitor <> ''),
    window_kind           text             NOT NULL CHECK (window_kind IN ('tumbling', 'sliding')),
    window_size_seconds   bigint           NOT NULL CHECK (window_size_seconds > 0),
    window_step_seconds   bigint           NOT NULL CHECK (window_step_seconds > 0),
    window_start          timestamp        NOT NULL,
    window_end            timestamp        NOT NULL,
    revision              bigint           NOT NULL CHECK (revision >= 0),
    predictions           bigint           NOT NULL CHECK (predictions >= 0),
    labelled_rows         bigint           NOT NULL CHECK (labelled_rows >= 0),
    -- Completions whose prediction the monitor never saw.
    unmatched_completions bigint           NOT NULL CHECK (unmatched_completions >= 0),
    -- NULL when no row is labelled. Error = prediction - target.
    mae                   double precision,
    rmse                  double precision,
    mape                  double precision,
    mape_rows             bigint,
    r2                    double precision,
    mean_error            double precision,
    label_delay_mean_seconds double precision,
    label_delay_p50_seconds  double precision,
    label_delay_p95_seconds  double precision,
    label_delay_max_seconds  double precision,
    fairness_low          double precision NOT NULL,
    fairness_high         double precision NOT NULL,
    -- `dimension=value` of the segment whose MAE ratio is farthest from 1.
    worst_segment         text,
    worst_mae_ratio       double precision,
    emitted_at            timestamptz      NOT NULL,
    stored_at             timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (monitor, window_kind, window_size_seconds, window_step_seconds, window_start),
    CHECK (window_end > window_start)
);

CREATE INDEX window_performance_shape_start
    ON window_performance (window_kind, window_size_seconds, window_start);

CREATE TABLE segment_performance (
    monitor             text             NOT NULL,
    window_kind         text             NOT NULL,
    window_size_seconds bigint           NOT NULL,
    window_step_seconds bigint           NOT NULL,
    window_start        timestamp        NOT NULL,
    dimension           text             NOT NULL,
    value               text             NOT NULL,
    predictions         bigint           NOT NULL CHECK (predictions >= 0),
    labelled_rows       bigint           NOT NULL CHECK (labelled_rows >= 0),
    -- Fewer labelled rows than the spec's min_segment_rows: counted, not measured.
    too_small           boolean          NOT NULL,
    mae                 double precision,
    rmse                double precision,
    mape                double precision,
    mape_rows           bigint,
    r2                  double precision,
    mean_error          double precision,
    label_delay_mean_seconds double precision,
    label_delay_p50_seconds  double precision,
    label_delay_p95_seconds  double precision,
    label_delay_max_seconds  double precision,
    -- Segment MAE / overall MAE and segment mean error / overall mean error.
    mae_ratio           double precision,
    bias_ratio          double precision,
    -- mae_ratio outside the window's fairness band.
    unfair              boolean          NOT NULL,
    PRIMARY KEY (monitor, window_kind, window_size_seconds, window_step_seconds, window_start,
                 dimension, value),
    FOREIGN KEY (monitor, window_kind, window_size_seconds, window_step_seconds, window_start)
        REFERENCES window_performance ON DELETE CASCADE
);

CREATE INDEX segment_performance_shape_start
    ON segment_performance (window_kind, window_size_seconds, window_start);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'streamwatch_grafana') THEN
        GRANT SELECT ON window_performance, segment_performance TO streamwatch_grafana;
    END IF;
END
$$;
