-- An index for the decision and reason filters of `authzctl audit list|tail|export`.
--
-- 0001 indexed time, subject + time and the request id. Tenant and tool (`target`) filters are
-- served by the time index (newest first, filtered): a full index on each cost 12-15% of the
-- durable ingestion rate on both backends here, paid by every request, for queries an operator
-- runs now and then.
--
-- Denials are the rows searched for by decision and by reason, and few among the allowed
-- traffic: the partial index holds only them, so an allowed record (almost all of the write
-- load) does not pay for it. The store writes the decision filter as a literal so both
-- backends can match this index's condition. An index on `reason` for allowed records would
-- hold one value (`policy_allow`) for nearly every row and is left out.

CREATE INDEX audit_records_denied ON audit_records (reason, time_ms) WHERE decision = 'deny';
