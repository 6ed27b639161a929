-- Approvals of held calls: a tool call an `approve` rule holds until a person approves it.
--
-- One row per pending approval, bound to the exact call: the principal (issuer, subject,
-- tenant), who acted for it (client id and `act` chain, as `acting`), the route, the tool and
-- the digest of its arguments. `state` is `pending` (waiting for an approver), `approved` (may
-- be used once, until `expires_ms`), `rejected` (identical calls are refused until
-- `expires_ms`) or `used` (the call went through, as request `used_request_id`). A pending row
-- expires at `expires_ms` too; an expired row is never used and stays as history.
-- Shared by every replica; written by the gateway (created, used) and by approvers
-- (`authzctl approvals approve|reject`, the approval page).
CREATE TABLE approval (
    id               TEXT   NOT NULL PRIMARY KEY,
    upstream         TEXT   NOT NULL,
    tool             TEXT   NOT NULL,
    issuer           TEXT   NOT NULL,
    subject          TEXT   NOT NULL,
    tenant           TEXT   NOT NULL,
    acting           TEXT   NOT NULL,
    args_digest      TEXT   NOT NULL,
    -- The call's arguments as the route redacts them for its audit records; NULL when the
    -- route keeps only their digest.
    arguments        TEXT,
    -- The caller's roles and the rule that held the call, for the approver.
    roles            TEXT   NOT NULL,
    rule             TEXT   NOT NULL,
    request_id       TEXT   NOT NULL,
    state            TEXT   NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'used')),
    created_ms       BIGINT NOT NULL,
    expires_ms       BIGINT NOT NULL,
    decided_by       TEXT,
    decided_ms       BIGINT,
    reason           TEXT,
    used_ms          BIGINT,
    used_request_id  TEXT
);

CREATE INDEX approval_call ON approval (issuer, subject, tenant, upstream, tool, args_digest, created_ms);

CREATE INDEX approval_open ON approval (state, expires_ms);

-- Every approver's decision, oldest first, written once into an audit chain (through
-- `audited_by`, as pin steps are): approved or rejected, by whom.
CREATE TABLE approval_history (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    approval_id TEXT   NOT NULL,
    event       TEXT   NOT NULL,
    actor       TEXT   NOT NULL,
    time_ms     BIGINT NOT NULL,
    audited_by  TEXT
);

CREATE INDEX approval_history_unaudited ON approval_history (id) WHERE audited_by IS NULL;
