-- A restarted monitor rebuilds its open windows from the topic and numbers their revisions
-- from 1 again. Each row carries the emitting process's generation (milliseconds since the
-- epoch at its start), and the sink keeps the highest (generation, revision): a restarted
-- monitor's rows replace its predecessor's, whose late updates would otherwise be refused.
-- Rows written before this column existed count as generation 0.
ALTER TABLE window_metrics ADD COLUMN generation bigint NOT NULL DEFAULT 0;
ALTER TABLE window_performance ADD COLUMN generation bigint NOT NULL DEFAULT 0;
