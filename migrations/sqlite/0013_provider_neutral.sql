-- Connections and webhooks of every platform, not only Shopify's: the
-- account a connection speaks for (shop domain, site URL, seller id, …),
-- the platform's own event id and when the platform says the event
-- happened get names no platform owns. RENAME COLUMN carries the
-- UNIQUE (provider, account, brand_id) constraint and the indexes along.
ALTER TABLE connections RENAME COLUMN shop_domain TO account;
ALTER TABLE inbox RENAME COLUMN shop_domain TO account;
ALTER TABLE inbox RENAME COLUMN triggered_at TO occurred_at;
ALTER TABLE inbox RENAME COLUMN shopify_event_id TO event_id;

-- A connection's non-secret settings, as JSON: a TikTok Shop app key, a
-- configurable HMAC source's scheme. NULL: the provider needs none.
ALTER TABLE connections ADD COLUMN settings TEXT;
