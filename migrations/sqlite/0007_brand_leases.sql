-- Many replicas (issue 5): a brand's pending webhooks are in one replica's
-- hands at a time, so that they reach the sink in the order received. A
-- lease not renewed by `lease_until` (epoch ms) belonged to a replica that
-- died; the next claim takes it over. See Store::claim.
CREATE TABLE brand_leases (
    brand_id    TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    lease_until INTEGER NOT NULL
);
CREATE INDEX brand_leases_owner ON brand_leases (owner);

-- Claims are by brand now; the pending index serves the claim window, and
-- this one a leased brand's rows in order.
CREATE INDEX inbox_pending_brand ON inbox (brand_id, id) WHERE status = 'pending';
CREATE INDEX inbox_pending_id ON inbox (id) WHERE status = 'pending';
