-- Policy store of authz-rbac: Casbin rules and the policy revision (SQLite).
--
-- `casbin_rule` keeps the usual Casbin adapter layout so the rules stay readable with Casbin
-- tooling: `p` rows are (v0 = role or subject, v1 = tenant, v2 = object glob, v3 = action,
-- v4 = effect); `g` rows are (v0 = subject or role, v1 = role, v2 = tenant). Unused columns hold
-- '' rather than NULL so the UNIQUE constraint also catches duplicates.
CREATE TABLE IF NOT EXISTS casbin_rule (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    ptype TEXT NOT NULL CHECK (ptype IN ('p', 'g')),
    v0    TEXT NOT NULL DEFAULT '',
    v1    TEXT NOT NULL DEFAULT '',
    v2    TEXT NOT NULL DEFAULT '',
    v3    TEXT NOT NULL DEFAULT '',
    v4    TEXT NOT NULL DEFAULT '',
    v5    TEXT NOT NULL DEFAULT '',
    UNIQUE (ptype, v0, v1, v2, v3, v4, v5)
);

-- One row. Every change to `casbin_rule` bumps `revision` in the same transaction, so a reader
-- that sees a revision also sees exactly the rules of that revision, and replicas can poll it.
CREATE TABLE IF NOT EXISTS policy_revision (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    revision      INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

INSERT INTO policy_revision (id, revision, updated_at_ms) VALUES (1, 0, 0)
    ON CONFLICT (id) DO NOTHING;
