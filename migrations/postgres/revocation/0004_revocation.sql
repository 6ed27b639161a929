-- Token revocations of authz-token (Postgres).
--
-- `revoked_token`: one token, by `jti`, refused until `expires_at` (Unix seconds, the token's
-- `exp`), after which the row can be pruned.
CREATE TABLE IF NOT EXISTS revoked_token (
    jti           TEXT PRIMARY KEY,
    expires_at    BIGINT NOT NULL,
    revoked_at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS revoked_token_expires_at ON revoked_token (expires_at);

-- `revoked_subject`: every token of (issuer, subject) with `iat < issued_before` is refused; the
-- row can be pruned after `expires_at` (the cut-off plus the longest accepted token lifetime).
CREATE TABLE IF NOT EXISTS revoked_subject (
    issuer        TEXT NOT NULL,
    subject       TEXT NOT NULL,
    issued_before BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at_ms BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX IF NOT EXISTS revoked_subject_expires_at ON revoked_subject (expires_at);

-- One row. Every revocation bumps `revision` in the same transaction (which also sends
-- NOTIFY authz_revocation_changed with the new revision), so replicas listen, or poll one
-- integer, and reload only when it changes.
CREATE TABLE IF NOT EXISTS revocation_revision (
    id            SMALLINT PRIMARY KEY CHECK (id = 1),
    revision      BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

INSERT INTO revocation_revision (id, revision, updated_at_ms) VALUES (1, 0, 0)
    ON CONFLICT (id) DO NOTHING;
