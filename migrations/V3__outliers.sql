-- Per window, numerical column and numerical prediction: the share of values outside the
-- reference's quantile range (`lower_quantile`..`upper_quantile`, numpy's linear method on the
-- reference's finite values) and outside its IQR fences (Q1 - 1.5 IQR, Q3 + 1.5 IQR).
-- "Outside" is strictly below the lower or strictly above the upper bound; the shares are of
-- the window's non-missing finite values (`finite_values`; null, NaN and ±inf are missing cells).

CREATE TABLE column_outliers (
    monitor                 text             NOT NULL,
    window_kind             text             NOT NULL,
    window_size_seconds     bigint           NOT NULL,
    window_step_seconds     bigint           NOT NULL,
    window_start            timestamp        NOT NULL,
    column_name             text             NOT NULL,
    lower_quantile          double precision NOT NULL,
    upper_quantile          double precision NOT NULL,
    -- The reference's values at lower_quantile and upper_quantile.
    lower_bound             double precision NOT NULL,
    upper_bound             double precision NOT NULL,
    -- NULL when the window has no value for the column.
    share_outside_quantiles double precision CHECK (share_outside_quantiles BETWEEN 0 AND 1),
    iqr_lower_fence         double precision NOT NULL,
    iqr_upper_fence         double precision NOT NULL,
    share_outside_iqr       double precision CHECK (share_outside_iqr BETWEEN 0 AND 1),
    -- The shares' denominator (the row's `values`).
    finite_values           bigint           NOT NULL CHECK (finite_values >= 0),
    PRIMARY KEY (monitor, window_kind, window_size_seconds, window_step_seconds, window_start, column_name),
    CHECK (lower_quantile >= 0 AND lower_quantile < upper_quantile AND upper_quantile <= 1),
    FOREIGN KEY (monitor, window_kind, window_size_seconds, window_step_seconds, window_start)
        REFERENCES window_metrics ON DELETE CASCADE
);

CREATE INDEX column_outliers_shape_start
    ON column_outliers (window_kind, window_size_seconds, window_start);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'streamwatch_grafana') THEN
        GRANT SELECT ON column_outliers TO streamwatch_grafana;
    END IF;
END
$$;
