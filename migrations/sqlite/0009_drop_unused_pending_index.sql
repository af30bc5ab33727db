-- `inbox_pending (next_attempt_at, id)` serves no query: the claim and the
-- backlog read pending rows in id order through `inbox_pending_id`, and the
-- claim's candidates by brand through `inbox_pending_brand` (EXPLAIN QUERY
-- PLAN). Every webhook still paid for it twice, an entry written when it
-- was stored and removed when it was finished, in the one writer's
-- transactions.
DROP INDEX IF EXISTS inbox_pending;
