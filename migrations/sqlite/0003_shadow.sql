-- Shadow runs: a route may name a second transform that runs on the same
-- webhooks without publishing; differences are counted and sampled.

ALTER TABLE routes ADD COLUMN shadow_transform TEXT;
ALTER TABLE route_history ADD COLUMN old_shadow TEXT;
ALTER TABLE route_history ADD COLUMN new_shadow TEXT;

CREATE TABLE shadow_stats (
    primary_transform TEXT NOT NULL,
    shadow_transform  TEXT NOT NULL,
    runs              INTEGER NOT NULL DEFAULT 0,
    differences       INTEGER NOT NULL DEFAULT 0,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (primary_transform, shadow_transform)
);

-- A bounded sample of differing runs (see Store::record_shadow_runs).
CREATE TABLE shadow_samples (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    primary_transform TEXT NOT NULL,
    shadow_transform  TEXT NOT NULL,
    inbox_id          INTEGER NOT NULL,
    topic             TEXT NOT NULL,
    primary_output    TEXT NOT NULL,
    shadow_output     TEXT NOT NULL,
    created_at        INTEGER NOT NULL
);
CREATE INDEX shadow_samples_pair ON shadow_samples (primary_transform, shadow_transform, id);
