-- Service health (`"record": "health"`): each monitor instance reports every few seconds on its
-- last interval — throughput, failures, consumer lag, window state, emit latency, memory. One row
-- per report, keyed by (monitor, instance, at), so a report delivered twice is stored once.
-- Times here are wall-clock times (`timestamptz`), not event times; `watermark` is an event time.

CREATE TABLE service_health (
    monitor               text             NOT NULL CHECK (monitor <> ''),
    -- Host name and process id: instances of one consumer group report separately.
    instance              text             NOT NULL CHECK (instance <> ''),
    -- End of the reporting interval.
    at                    timestamptz      NOT NULL,
    interval_seconds      double precision NOT NULL
        CHECK (interval_seconds >= 0 AND interval_seconds < 'Infinity'),
    -- Messages consumed in the interval (scored events and completions), and per second.
    events_in             bigint           NOT NULL CHECK (events_in >= 0),
    events_per_second     double precision NOT NULL
        CHECK (events_per_second >= 0 AND events_per_second < 'Infinity'),
    -- Messages dead-lettered in the interval.
    events_failed         bigint           NOT NULL CHECK (events_failed >= 0),
    -- Messages behind the end of the assigned partitions; NULL before the first statistics.
    consumer_lag          bigint           CHECK (consumer_lag >= 0),
    -- The scored topic's watermark (event time); NULL before the first event.
    watermark             timestamp,
    open_windows          bigint           NOT NULL CHECK (open_windows >= 0),
    panes                 bigint           NOT NULL CHECK (panes >= 0),
    -- Window rows published in the interval.
    windows_emitted       bigint           NOT NULL CHECK (windows_emitted >= 0),
    -- Mean seconds from the publication of a window's latest event to the window's emission,
    -- over the windows emitted in the interval; NULL when none was.
    emit_latency_seconds  double precision
        CHECK (emit_latency_seconds >= 0 AND emit_latency_seconds < 'Infinity'),
    resident_memory_bytes bigint           CHECK (resident_memory_bytes >= 0),
    uptime_seconds        double precision NOT NULL
        CHECK (uptime_seconds >= 0 AND uptime_seconds < 'Infinity'),
    stored_at             timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (monitor, instance, at)
);

-- Dashboards select a time range across monitors and instances.
CREATE INDEX service_health_at ON service_health (at);

-- When the window's latest event was published to Kafka (its message timestamp, kept by the
-- scorer from the producer); NULL when the messages carry no timestamp. `stored_at` (set again
-- by every applied revision) minus this is the end-to-end latency from event to stored metric.
ALTER TABLE window_metrics ADD COLUMN last_event_published_at timestamptz;

-- The service-health dashboard plots the latency over the time windows were stored.
CREATE INDEX window_metrics_stored_at ON window_metrics (stored_at);

-- The end-to-end latency of each stored window (its latest applied revision): from the
-- publication of its latest event to the row's storage, in seconds.
CREATE VIEW window_latency AS
SELECT monitor,
       window_kind,
       window_size_seconds,
       window_step_seconds,
       window_start,
       window_end,
       revision,
       last_event_published_at,
       stored_at,
       extract(epoch FROM stored_at - last_event_published_at)::double precision AS latency_seconds
FROM window_metrics
WHERE last_event_published_at IS NOT NULL;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'streamwatch_grafana') THEN
        GRANT SELECT ON service_health, window_latency TO streamwatch_grafana;
    END IF;
END
$$;
