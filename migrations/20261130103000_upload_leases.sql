-- A writer's lease on a tus upload, instead of a transaction-scoped advisory
-- lock: the lock held one pooled connection for a whole PATCH body, so a few
-- dozen slow clients took the pool. A lease is taken by one conditional
-- UPDATE (free, or expired), renewed while the request runs, released by
-- another UPDATE; a holder that died simply lets it expire. Times are the
-- database's clock, so replicas' clocks never have to agree.
ALTER TABLE uploads
    ADD COLUMN lease_holder uuid,          -- the request writing now; NULL when none
    ADD COLUMN lease_until  timestamptz;   -- after this the lease is free to take
