-- Admin API: bearer tokens, and which workspaces uploaded which transform
-- versions.

-- Only the sha256 of a token is kept, so a copy of the database does not
-- hand out access. An operator token has no workspace; a workspace token
-- has exactly one.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('operator', 'workspace')),
    workspace_id TEXT,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    CHECK ((kind = 'operator' AND workspace_id IS NULL)
        OR (kind = 'workspace' AND workspace_id IS NOT NULL AND workspace_id != ''))
);

-- A version is keyed by the digest of its bytes, so two workspaces that
-- upload the same bytes share one `transforms` row; ownership therefore
-- lives beside it, one row per (version, workspace), each with the name
-- that workspace gave it. Operator uploads add no row: operators see every
-- version anyway.
CREATE TABLE transform_owners (
    digest       TEXT NOT NULL REFERENCES transforms (digest),
    workspace_id TEXT NOT NULL,
    name         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (digest, workspace_id)
);
CREATE INDEX transform_owners_workspace ON transform_owners (workspace_id);
