-- Tamper evidence for the audit log: a hash chain per writer, and signed checkpoints.
--
-- Each record written by an `AuditWriter` belongs to one chain (`chain_id`, one per gateway
-- replica) and carries its position `seq` (1, 2, 3, ... without gaps), the hash of the previous
-- record of its chain (`prev_hash`, 32 zero bytes for the first) and its own `hash`: SHA-256 over
-- a versioned, length-prefixed encoding of every field (see `authz_audit::record_hash`).
-- The columns are NULL for rows written before this migration or through `AuditStore::append`
-- (unchained rows); verification counts those but cannot vouch for them. Adding nullable
-- columns without defaults does not rewrite the table.

ALTER TABLE audit_records
    ADD COLUMN chain_id  TEXT,
    ADD COLUMN seq       BIGINT,
    ADD COLUMN prev_hash BYTEA,
    ADD COLUMN hash      BYTEA;

-- One row per position of a chain; also the order verification walks in. Unchained rows
-- (NULL chain_id) do not collide: NULLs are distinct in a unique index.
CREATE UNIQUE INDEX audit_records_chain_seq ON audit_records (chain_id, seq);

-- Checkpoints (`kind = 'checkpoint'`): the writer's statement "chain C had hash H at seq S at
-- time T", signed with its Ed25519 key when it has one. Anchors (`kind = 'anchor'`) are written
-- by pruning: the seq and hash of the last deleted record, so what remains still verifies.
CREATE TABLE audit_checkpoints (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind      TEXT   NOT NULL CHECK (kind IN ('checkpoint', 'anchor')),
    chain_id  TEXT   NOT NULL,
    seq       BIGINT NOT NULL,
    hash      BYTEA  NOT NULL,
    time_ms   BIGINT NOT NULL,
    -- 64-byte Ed25519 signature, NULL when the writer had no key.
    signature BYTEA
);

CREATE UNIQUE INDEX audit_checkpoints_chain_kind_seq ON audit_checkpoints (chain_id, kind, seq);
