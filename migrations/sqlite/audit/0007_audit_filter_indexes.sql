-- Indexes for the tool, decision and reason filters of `authzctl audit list|tail|export`.
--
-- 0001 indexed time, subject + time and the request id. Here: tool (the `target` column) + time,
-- and a partial index for denials. Every index is paid for by every request (measured here:
-- about 6% of the durable ingestion rate each), so the tenant filter has none: a deployment has
-- few tenants, each a large share of the records, and newest first through the time index finds
-- a tenant's records about as fast as an index on it would.
--
-- Denials are the rows searched for by decision and by reason, and few among the allowed
-- traffic: the partial index holds only them, so an allowed record (almost all of the write
-- load) does not pay for it. The store writes the decision filter as a literal so both
-- backends can match this index's condition. An index on `reason` for allowed records would
-- hold one value (`policy_allow`) for nearly every row and is left out.

CREATE INDEX audit_records_target_time ON audit_records (target, time_ms);
CREATE INDEX audit_records_denied ON audit_records (reason, time_ms) WHERE decision = 'deny';
