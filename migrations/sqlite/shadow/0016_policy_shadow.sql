-- Shadow mode: the candidate policy evaluated beside the live one on real traffic, shared by
-- every replica (it lives in the audit database). At most one runs at a time: the row with
-- `stopped_ms` NULL. `candidate` is the candidate policy as Casbin CSV text, validated by
-- `authzctl policy shadow start` before it is stored; rows stay as the history of what ran.
CREATE TABLE policy_shadow (
    id          BIGINT NOT NULL PRIMARY KEY,
    candidate   TEXT   NOT NULL,
    label       TEXT   NOT NULL,
    started_by  TEXT   NOT NULL,
    started_ms  BIGINT NOT NULL,
    stopped_by  TEXT,
    stopped_ms  BIGINT
);
