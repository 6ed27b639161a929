-- Pinned definitions of what upstreams offer: tools, prompts and resource templates.
--
-- Per upstream, kind and name: the approved definition (its SHA-256 digest and the canonical
-- JSON it was computed over) and, when the upstream now serves a different one, that pending
-- definition. `state` is `approved` (what is served matches the approved definition),
-- `pending` (a different definition awaits a decision; the item is hidden and its calls are
-- refused) or `rejected` (an operator refused the pending definition; it stays blocked).
-- Shared by every replica; written by the gateway (first sight, changes) and by
-- `authzctl tools approve|reject`.
CREATE TABLE definition_pin (
    upstream            TEXT   NOT NULL,
    kind                TEXT   NOT NULL CHECK (kind IN ('tool', 'prompt', 'resource_template')),
    name                TEXT   NOT NULL,
    approved_digest     TEXT,
    approved_definition TEXT,
    pending_digest      TEXT,
    pending_definition  TEXT,
    state               TEXT   NOT NULL CHECK (state IN ('approved', 'pending', 'rejected')),
    first_seen_ms       BIGINT NOT NULL,
    changed_ms          BIGINT NOT NULL,
    decided_by          TEXT,
    decided_ms          BIGINT,
    PRIMARY KEY (upstream, kind, name)
);

-- Every step of every pin, oldest first (and, through `audited_by`, once into an audit chain): first sight, a change, a revert, an approval, a
-- rejection; who did it (`gateway` for what a gateway saw) and the digest it concerned.
CREATE TABLE definition_pin_history (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    upstream TEXT   NOT NULL,
    kind     TEXT   NOT NULL,
    name     TEXT   NOT NULL,
    event    TEXT   NOT NULL,
    digest   TEXT,
    actor    TEXT   NOT NULL,
    time_ms  BIGINT NOT NULL,
    -- The gateway replica that wrote this step into its audit chain (each step is written by
    -- exactly one replica, the one that claims it); NULL until then.
    audited_by TEXT
);

CREATE INDEX definition_pin_history_item ON definition_pin_history (upstream, kind, name, id);

CREATE INDEX definition_pin_history_unaudited ON definition_pin_history (id) WHERE audited_by IS NULL;
