-- Drift and data quality per segment (`pickup_borough` = `Queens`) of the segment dimensions
-- with `drift = true`: each segment of a window tested against the same segment of the
-- reference. A window row's `segments`; replaced with the window's revision like its columns.

CREATE TABLE segment_drift (
    monitor                   text             NOT NULL,
    window_kind               text             NOT NULL,
    window_size_seconds       bigint           NOT NULL,
    window_step_seconds       bigint           NOT NULL,
    window_start              timestamp        NOT NULL,
    dimension                 text             NOT NULL,
    segment                   text             NOT NULL,
    row_count                 bigint           NOT NULL CHECK (row_count >= 0),
    reference_rows            bigint           NOT NULL CHECK (reference_rows >= 0),
    -- Fewer rows of the segment in the window or the reference than the spec's
    -- min_segment_rows: counts and missing values only, the drift columns are NULL.
    too_small                 boolean          NOT NULL,
    number_of_missing_values  bigint           NOT NULL CHECK (number_of_missing_values >= 0),
    share_of_missing_values   double precision,
    -- The prediction column's drift test in the segment (NULL score: undefined, or no test).
    prediction_drift          double precision,
    prediction_stattest       text,
    prediction_threshold      double precision,
    prediction_drift_detected boolean,
    number_of_drifted_columns bigint           CHECK (number_of_drifted_columns >= 0),
    share_of_drifted_columns  double precision,
    dataset_drift             boolean,
    PRIMARY KEY (monitor, window_kind, window_size_seconds, window_step_seconds, window_start,
                 dimension, segment),
    FOREIGN KEY (monitor, window_kind, window_size_seconds, window_step_seconds, window_start)
        REFERENCES window_metrics ON DELETE CASCADE
);

CREATE INDEX segment_drift_shape_start
    ON segment_drift (window_kind, window_size_seconds, window_start);

-- Each column's drift test in a segment, as `column_drift` for the whole window.
CREATE TABLE segment_column_drift (
    monitor             text             NOT NULL,
    window_kind         text             NOT NULL,
    window_size_seconds bigint           NOT NULL,
    window_step_seconds bigint           NOT NULL,
    window_start        timestamp        NOT NULL,
    dimension           text             NOT NULL,
    segment             text             NOT NULL,
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
    PRIMARY KEY (monitor, window_kind, window_size_seconds, window_step_seconds, window_start,
                 dimension, segment, column_name),
    -- Deleting a segment (or, through it, its window) deletes its columns.
    FOREIGN KEY (monitor, window_kind, window_size_seconds, window_step_seconds, window_start,
                 dimension, segment)
        REFERENCES segment_drift ON DELETE CASCADE
);

CREATE INDEX segment_column_drift_shape_start
    ON segment_column_drift (window_kind, window_size_seconds, window_start);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'streamwatch_grafana') THEN
        GRANT SELECT ON segment_drift, segment_column_drift TO streamwatch_grafana;
    END IF;
END
$$;
