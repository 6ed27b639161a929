-- Audit shipping: where each sink stands in each chain, and which replica ships it.
--
-- A shipper (`authz_audit::Shipper`) exports the chained records of every chain to one sink
-- (an HTTP collector, an OTLP logs endpoint) in seq order. `seq` is the last seq the sink has
-- acknowledged; a record is sent again only when its batch was sent but the cursor did not
-- move (at least once). Any replica may ship any chain: the one that holds the lease
-- (`holder`, until `lease_until_ms`, Unix milliseconds) does, and renews it while it works;
-- a lease that runs out is taken over, so a replica that went away does not strand its chain.
CREATE TABLE audit_ship_cursors (
    sink           TEXT   NOT NULL,
    chain_id       TEXT   NOT NULL,
    seq            BIGINT NOT NULL,
    holder         TEXT,
    lease_until_ms BIGINT NOT NULL,
    updated_ms     BIGINT NOT NULL,
    PRIMARY KEY (sink, chain_id)
);
