-- Audit record, second version: decision and outcome records, and what a call carried and showed.
--
-- The gateway now writes two records per forwarded request, with the same request id: the
-- decision (`kind = 'decision'`, before forwarding) and the outcome (`kind = 'outcome'`, after
-- the upstream answered or the stream ended). Rows written before this migration are decisions.
-- `kind` has no CHECK, like `reason`: a value the running code does not know is reported as
-- corrupt when read, and a new kind must not need a migration (SQLite cannot alter a CHECK).
--
-- New columns, one per new `authz_types::AuditRecord` field:
-- - `trace_id`: the distributed trace id;
-- - `upstream_status`, `upstream_latency_ms`, `outcome`: what happened upstream (outcome rows);
-- - `args_digest`: lowercase hex SHA-256 of the call's arguments;
-- - `arguments`: the (redacted) arguments as JSON text, only where configured;
-- - `shown`: for list calls, the names or URIs the caller was shown, a JSON array of strings
--   like `actors`, `scopes` and `roles`.
--
-- `hash_version` is the version of the encoding the row's `hash` was computed with (see
-- `authz_audit::HashVersion`). Rows chained before this migration were hashed with version 1,
-- which the default records; new rows are written with version 2, which covers the new columns.
-- Verification recomputes each row with its own version, so old chains still verify.

ALTER TABLE audit_records ADD COLUMN kind                TEXT    NOT NULL DEFAULT 'decision';
ALTER TABLE audit_records ADD COLUMN trace_id            TEXT;
ALTER TABLE audit_records ADD COLUMN upstream_status     INTEGER CHECK (upstream_status BETWEEN 0 AND 65535);
ALTER TABLE audit_records ADD COLUMN upstream_latency_ms INTEGER;
ALTER TABLE audit_records ADD COLUMN outcome             TEXT;
ALTER TABLE audit_records ADD COLUMN args_digest         TEXT;
ALTER TABLE audit_records ADD COLUMN arguments           TEXT;
ALTER TABLE audit_records ADD COLUMN shown               TEXT    NOT NULL DEFAULT '[]';
ALTER TABLE audit_records ADD COLUMN hash_version        INTEGER NOT NULL DEFAULT 1;
