-- Audit record, fourth version: the first round a multi round-trip retry links to.
--
-- New column, one per new `authz_types::AuditRecord` field:
-- - `first_round_request_id`: on the records of a retry of a multi round-trip call (MCP
--   2026-07-28), the gateway request id of the call's first round, whose answer first asked
--   for input (the same for every later round). NULL for a first round and every other
--   request.
--
-- New rows are hashed with version 4 of the encoding (`authz_audit::HashVersion`), which
-- covers this column; older rows keep their version and still verify.

ALTER TABLE audit_records ADD COLUMN first_round_request_id TEXT;
