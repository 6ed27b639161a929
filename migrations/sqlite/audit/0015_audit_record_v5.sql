-- Audit record, fifth version: shadow mode.
--
-- New column, one per new `authz_types::AuditRecord` field:
-- - `shadow`: on a decision record while a candidate policy runs in shadow mode, how the
--   candidate would have decided the request when that differs from the decision made
--   (`<allow|deny|held> <reason>[: <rule>]`). Never enforced. NULL otherwise.
--
-- New rows are hashed with version 5 of the encoding (`authz_audit::HashVersion`), which
-- covers this column; older rows keep their version and still verify.

ALTER TABLE audit_records ADD COLUMN shadow TEXT;
