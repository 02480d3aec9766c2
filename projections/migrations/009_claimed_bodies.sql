-- The bytes each id was claimed for: ingest's outbox. When the embedded broker loses its
-- in-memory log, the re-seed republishes what was acknowledged (it has a receipt) but never
-- archived, so no 201 is lost with the broker (services/restore.py).
alter table ingest_claims add column body bytea;
