-- Alert transitions (`"record": "alert"`): a rule fired at a window (the last of `for_windows`
-- consecutive breaching windows) or resolved there (the first that does not breach).

CREATE TABLE alerts (
    monitor             text             NOT NULL CHECK (monitor <> ''),
    window_kind         text             NOT NULL CHECK (window_kind IN ('tumbling', 'sliding')),
    window_size_seconds bigint           NOT NULL CHECK (window_size_seconds > 0),
    window_step_seconds bigint           NOT NULL CHECK (window_step_seconds > 0),
    window_start        timestamp        NOT NULL,
    window_end          timestamp        NOT NULL,
    rule                text             NOT NULL,
    state               text             NOT NULL CHECK (state IN ('firing', 'resolved')),
    metric              text             NOT NULL,
    op                  text             NOT NULL,
    threshold           double precision NOT NULL,
    for_windows         integer          NOT NULL CHECK (for_windows >= 1),
    -- The metric in that window; NULL when undefined there.
    value               double precision,
    emitted_at          timestamptz      NOT NULL,
    stored_at           timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (monitor, window_kind, window_size_seconds, window_step_seconds, window_start, rule)
);

CREATE INDEX alerts_rule_start ON alerts (rule, window_start);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'streamwatch_grafana') THEN
        GRANT SELECT ON alerts TO streamwatch_grafana;
    END IF;
END
$$;
