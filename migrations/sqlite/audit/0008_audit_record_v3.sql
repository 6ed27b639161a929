-- Audit record, third version: the client's address, and aggregated refusals.
--
-- New columns, one per new `authz_types::AuditRecord` field:
-- - `client_addr`: the address of the client the request came from (the TCP peer the gateway
--   saw, not a forwarded header);
-- - `repeat_count`, `first_time_ms`: a record that stands for several identical refusals of
--   requests without an identity (same client address, route, reason and status) carries how
--   many, and when the first was refused (`time_ms` is the last). NULL for a record of one
--   request.
--
-- New rows are hashed with version 3 of the encoding (`authz_audit::HashVersion`), which
-- covers these columns; older rows keep their version and still verify.

ALTER TABLE audit_records ADD COLUMN client_addr   TEXT;
ALTER TABLE audit_records ADD COLUMN repeat_count  INTEGER CHECK (repeat_count >= 1);
ALTER TABLE audit_records ADD COLUMN first_time_ms INTEGER;
