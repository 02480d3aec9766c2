-- The body each event id was first claimed for, written before the event goes to the log: an
-- ingest that dies between the broker's ack and the receipt can no longer let the same id
-- through with another body.
create table ingest_claims (
    event_id    uuid primary key,
    body_digest text not null,
    claimed_at  timestamptz not null default now()
);
insert into ingest_claims (event_id, body_digest)
    select event_id, body_digest from ingest_receipts on conflict do nothing;
