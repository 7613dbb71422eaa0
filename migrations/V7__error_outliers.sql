-- Outliers of the model's errors (prediction - target) per window, against the reference's
-- errors: share outside its quantile range and outside its IQR fences (NULL without a target
-- in the reference or without labelled rows).
ALTER TABLE window_performance
    ADD COLUMN error_lower_bound             double precision,
    ADD COLUMN error_upper_bound             double precision,
    ADD COLUMN error_share_outside_quantiles double precision,
    ADD COLUMN error_share_outside_iqr       double precision;
