-- Wix's `AppRemoved` is a lifecycle webhook too: its effect (the
-- instance's connection disconnected, its tokens deleted) is applied after
-- its event is published, and found again after a crash by this index.
-- The topic list is the store's LIFECYCLE_TOPICS_SQL.
DROP INDEX inbox_lifecycle_due;
CREATE INDEX inbox_lifecycle_due ON inbox (id)
    WHERE lifecycle_applied_at IS NULL AND status = 'published'
      AND topic IN ('app/uninstalled', 'shop/redact', 'customers/redact', 'customers/data_request',
                    'seller_deauthorization', 'AppRemoved');
