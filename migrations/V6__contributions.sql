-- Explainability of a linear model (`monitor --model`): per window and feature, the mean and
-- mean absolute contribution `coefficient × (x − reference mean)` (missing x as 0) and the
-- drift of the contributions against the reference's.

CREATE TABLE feature_contributions (
    monitor                         text             NOT NULL,
    window_kind                     text             NOT NULL,
    window_size_seconds             bigint           NOT NULL,
    window_step_seconds             bigint           NOT NULL,
    window_start                    timestamp        NOT NULL,
    feature                         text             NOT NULL,
    coefficient                     double precision NOT NULL,
    reference_mean                  double precision NOT NULL,
    -- NULL when the window has no rows.
    mean_contribution               double precision,
    mean_abs_contribution           double precision,
    reference_mean_abs_contribution double precision NOT NULL,
    -- Normed Wasserstein distance of the contributions from the reference's; drift at >= 0.1.
    drift_score                     double precision,
    drift_detected                  boolean          NOT NULL,
    rows                            bigint           NOT NULL CHECK (rows >= 0),
    PRIMARY KEY (monitor, window_kind, window_size_seconds, window_step_seconds, window_start, feature),
    FOREIGN KEY (monitor, window_kind, window_size_seconds, window_step_seconds, window_start)
        REFERENCES window_metrics ON DELETE CASCADE
);

CREATE INDEX feature_contributions_shape_start
    ON feature_contributions (window_kind, window_size_seconds, window_start);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'streamwatch_grafana') THEN
        GRANT SELECT ON feature_contributions TO streamwatch_grafana;
    END IF;
END
$$;
