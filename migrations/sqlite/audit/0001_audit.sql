-- Audit log of the authorization gateway: one row per decision, allowed or denied.
--
-- One column per `authz_types::AuditRecord` field, plus `id`. The list fields (actors, scopes,
-- roles) are JSON arrays of strings stored as TEXT: the same text on SQLite and Postgres, the order
-- of the delegation chain is kept, and they are still searchable with json_each().
-- `decision` and `reason` hold the stable strings of `Effect::as_str` and `ReasonCode::as_str`.
-- There is deliberately no CHECK on `reason`: new reason codes must not need a migration, and a
-- value the running code does not know is reported as corrupt when read, never guessed.

CREATE TABLE audit_records (
    -- AUTOINCREMENT so an id is never reused, even after the newest row was deleted.
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms         INTEGER NOT NULL,
    request_id      TEXT    NOT NULL,
    session_id      TEXT,
    tenant          TEXT,
    subject         TEXT,
    issuer          TEXT,
    client_id       TEXT,
    actors          TEXT    NOT NULL,
    token_id        TEXT,
    scopes          TEXT    NOT NULL,
    roles           TEXT    NOT NULL,
    upstream        TEXT    NOT NULL,
    method          TEXT    NOT NULL,
    target          TEXT,
    decision        TEXT    NOT NULL CHECK (decision IN ('allow', 'deny')),
    reason          TEXT    NOT NULL,
    matched_rule    TEXT,
    policy_revision INTEGER,
    http_status     INTEGER CHECK (http_status BETWEEN 0 AND 65535),
    jsonrpc_error   INTEGER
);

-- Queries are newest first, optionally narrowed by time, subject or request id.
CREATE INDEX audit_records_time ON audit_records (time_ms, id);
CREATE INDEX audit_records_subject_time ON audit_records (subject, time_ms, id);
CREATE INDEX audit_records_request_id ON audit_records (request_id);
