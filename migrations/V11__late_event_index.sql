-- The scorer sends scored events in batches, many to a Kafka message, so a late event's place
-- in the monitor's input topic is its message's partition and offset plus its index among the
-- message's events. Rows stored before batches existed had one event per message: index 0.
ALTER TABLE late_events ADD COLUMN source_index integer NOT NULL DEFAULT 0
    CHECK (source_index >= 0);
ALTER TABLE late_events DROP CONSTRAINT late_events_pkey;
ALTER TABLE late_events ADD PRIMARY KEY (monitor, window_kind, window_size_seconds,
    window_step_seconds, source_topic, source_partition, source_offset, source_index);
