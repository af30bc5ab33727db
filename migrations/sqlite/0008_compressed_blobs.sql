-- Large blobs may be kept as zstd frames (host/src/store/blob.rs). Rows
-- written before keep their plain bytes and say so.
ALTER TABLE inbox ADD COLUMN body_encoding TEXT NOT NULL DEFAULT 'identity';

-- An event's payload is either `payload` (JSON text) or, compressed,
-- `payload_zstd`, with `payload` then left empty.
ALTER TABLE events ADD COLUMN payload_zstd BLOB;
-- The workspace of each event as a column: the admin API filters on it, and
-- a compressed payload cannot be searched in SQL.
ALTER TABLE events ADD COLUMN workspace_id TEXT;
UPDATE events SET workspace_id = json_extract(payload, '$.workspace_id')
WHERE json_valid(payload);
