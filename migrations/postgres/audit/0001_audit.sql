-- Audit log of the authorization gateway: one row per decision, allowed or denied.
--
-- One column per `authz_types::AuditRecord` field, plus `id`. The list fields (actors, scopes,
-- roles) are JSON arrays of strings stored as TEXT (not JSONB): the same text on SQLite and
-- Postgres, read back byte for byte, and still searchable with `actors::jsonb`.
-- `decision` and `reason` hold the stable strings of `Effect::as_str` and `ReasonCode::as_str`.
-- There is deliberately no CHECK on `reason`: new reason codes must not need a migration, and a
-- value the running code does not know is reported as corrupt when read, never guessed.

CREATE TABLE audit_records (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time_ms         BIGINT NOT NULL,
    request_id      TEXT   NOT NULL,
    session_id      TEXT,
    tenant          TEXT,
    subject         TEXT,
    issuer          TEXT,
    client_id       TEXT,
    actors          TEXT   NOT NULL,
    token_id        TEXT,
    scopes          TEXT   NOT NULL,
    roles           TEXT   NOT NULL,
    upstream        TEXT   NOT NULL,
    method          TEXT   NOT NULL,
    target          TEXT,
    decision        TEXT   NOT NULL CHECK (decision IN ('allow', 'deny')),
    reason          TEXT   NOT NULL,
    matched_rule    TEXT,
    policy_revision BIGINT,
    -- BIGINT (not INTEGER) so every integer column decodes as i64 on both backends.
    http_status     BIGINT CHECK (http_status BETWEEN 0 AND 65535),
    jsonrpc_error   BIGINT
);

-- Queries are newest first, optionally narrowed by time, subject or request id.
CREATE INDEX audit_records_time ON audit_records (time_ms, id);
CREATE INDEX audit_records_subject_time ON audit_records (subject, time_ms, id);
CREATE INDEX audit_records_request_id ON audit_records (request_id);
