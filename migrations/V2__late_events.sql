-- Scored events a monitor dropped because they arrived after the update horizon of every
-- window of a shape that contains them. One row per event and window shape, keyed by the
-- event's place in the monitor's input topic, so a report repeated after a restart is stored once.

CREATE TABLE late_events (
    monitor             text        NOT NULL CHECK (monitor <> ''),
    window_kind         text        NOT NULL CHECK (window_kind IN ('tumbling', 'sliding')),
    window_size_seconds bigint      NOT NULL CHECK (window_size_seconds > 0),
    window_step_seconds bigint      NOT NULL CHECK (window_step_seconds > 0),
    source_topic        text        NOT NULL,
    source_partition    integer     NOT NULL CHECK (source_partition >= 0),
    source_offset       bigint      NOT NULL CHECK (source_offset >= 0),
    event_time          timestamp   NOT NULL,
    -- The monitor's watermark when it dropped the event.
    watermark           timestamp   NOT NULL,
    dropped_at          timestamptz NOT NULL,
    PRIMARY KEY (monitor, window_kind, window_size_seconds, window_step_seconds,
                 source_topic, source_partition, source_offset)
);

CREATE INDEX late_events_shape_time
    ON late_events (monitor, window_kind, window_size_seconds, window_step_seconds, event_time);

-- Late events dropped per window. A window that only late events would have had has no
-- metric row, so the windows come from the late events themselves: every window of the
-- shape containing the event (one for tumbling, size/step for sliding windows).
CREATE VIEW window_late_events AS
SELECT l.monitor,
       l.window_kind,
       l.window_size_seconds,
       l.window_step_seconds,
       w.window_start,
       w.window_start + make_interval(secs => l.window_size_seconds) AS window_end,
       count(*)                                                     AS late_events_dropped
FROM late_events l
CROSS JOIN LATERAL (
    SELECT to_timestamp(
               (floor(extract(epoch FROM l.event_time) / l.window_step_seconds) - k)
               * l.window_step_seconds
           ) AT TIME ZONE 'UTC' AS window_start
    FROM generate_series(0, l.window_size_seconds / l.window_step_seconds - 1) AS k
) w
GROUP BY 1, 2, 3, 4, 5, 6;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'streamwatch_grafana') THEN
        GRANT SELECT ON late_events, window_late_events TO streamwatch_grafana;
    END IF;
END
$$;
