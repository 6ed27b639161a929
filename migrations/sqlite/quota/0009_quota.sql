-- The quota ledger: the token buckets of `policy.quotas_file`, shared by the gateway replicas.
--
-- One row per quota rule and key (a principal `issuer\nsubject`, a tenant, or '' for a rule
-- shared by all): the bucket's contents in millionths of a token (`micro`) as of `updated_ms`
-- (Unix ms). Each replica adds what it took since its last exchange and reads back every row
-- changed since then (see `authz_rbac::QuotaLedger`).

CREATE TABLE quota_bucket (
    quota      TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    micro      INTEGER NOT NULL CHECK (micro >= 0),
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (quota, key)
);
CREATE INDEX quota_bucket_updated ON quota_bucket (updated_ms);
