-- Policy history and declared roles of authz-rbac (Postgres).
--
-- `policy_history` gets one row per change of the policy store, written in the same transaction
-- as the change and its revision bump: who made it (`actor`), when, what kind of change
-- (`action`: grant, revoke, assign, unassign, import, role-create, role-delete), the policy lines
-- added (`+ ...`) and removed (`- ...`) one per line in `detail`, and the revision it moved the
-- store from and to.
CREATE TABLE IF NOT EXISTS policy_history (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms         BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    detail        TEXT NOT NULL,
    from_revision BIGINT NOT NULL,
    to_revision   BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS policy_history_to_revision ON policy_history (to_revision);

-- Roles declared with `authzctl role create`, with a description. A role does not have to be
-- declared to be used: any name in a rule or a `g` line is a role.
CREATE TABLE IF NOT EXISTS policy_role (
    name          TEXT PRIMARY KEY,
    description   TEXT NOT NULL DEFAULT '',
    created_at_ms BIGINT NOT NULL
);
