-- 013 — byte-order collation for identifiers (issue 2).
--
-- Phone numbers (E.164), route names, provider and inbound references and idempotency keys are
-- identifiers: nobody reads them in a language's sort order. Their indexes, though, compared
-- them with the database's collation, which is a libc locale on most installations (the
-- clusters of `make demo` and `make check` use C.UTF-8; a French server, fr_FR.UTF-8): every
-- comparison in a B-tree went through strcoll(). With COLLATE "C" they compare as bytes.
-- Measured: a B-tree on 1,000,000 French mobile numbers builds in 5.0 s under fr_FR.UTF-8 and
-- in 1.4 s under "C" (1.5–1.9 s under C.UTF-8); each message inserts into or looks up about
-- five such indexes (its number in messages and contacts, its route in outbox_queue, route and
-- provider reference in attempts). Names and texts keep the database's collation (the admin
-- UI sorts residents by name in French order).
--
-- Only the collation changes: the tables are not rewritten, but the indexes on these columns
-- are rebuilt, which takes time on a large installation (the migration runs at start-up, under
-- the migration lock). Equality between these columns and other text values is unchanged: a
-- column's "C" wins over the default collation, and these columns are only compared with one
-- another or with default-collation values.

ALTER TABLE messages ALTER COLUMN phone TYPE text COLLATE "C",
                     ALTER COLUMN route TYPE text COLLATE "C",
                     ALTER COLUMN idempotency_key TYPE text COLLATE "C",
                     ALTER COLUMN inbound_ref TYPE text COLLATE "C";
ALTER TABLE outbox_queue ALTER COLUMN route TYPE text COLLATE "C";
ALTER TABLE attempts ALTER COLUMN route TYPE text COLLATE "C",
                     ALTER COLUMN provider_ref TYPE text COLLATE "C";
ALTER TABLE contacts ALTER COLUMN phone TYPE text COLLATE "C";
ALTER TABLE centre_routes ALTER COLUMN route TYPE text COLLATE "C";
