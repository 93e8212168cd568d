-- What `acme-customer dlq replay` has republished, so that nothing is replayed twice by accident.
CREATE TABLE IF NOT EXISTS dlq_replays (
    dlq_topic VARCHAR(249) NOT NULL,
    dlq_partition INTEGER NOT NULL,
    dlq_offset BIGINT NOT NULL,
    error_class VARCHAR(100) NOT NULL,
    replayed_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
);
