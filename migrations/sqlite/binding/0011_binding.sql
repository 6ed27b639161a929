-- Owner bindings shared by the gateway replicas: which principal an MCP session id, or a task
-- id, belongs to, so any replica can serve any request of any session or task (no sticky
-- routing) and refuse the id to anyone else.
--
-- One row per (kind, upstream route, id): `kind` is 'session' or 'task', `owner` the principal
-- as `issuer \n subject \n tenant`. The first binding of an id wins; it lasts until
-- `expires_ms` (Unix ms) or until the session is ended (`DELETE`), and is pruned after that
-- (see `authz_rbac::BindingStore`).

CREATE TABLE owner_binding (
    kind       TEXT   NOT NULL CHECK (kind IN ('session', 'task')),
    upstream   TEXT   NOT NULL,
    id         TEXT   NOT NULL,
    owner      TEXT   NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, upstream, id)
);
CREATE INDEX owner_binding_expires ON owner_binding (expires_ms);
