-- Offsets in the database: a projection's batch and its next offsets commit together.
create table projection_offsets (
    projection  text    not null,
    topic       text    not null,
    partition   int     not null,
    next_offset bigint  not null,
    updated_at  timestamptz not null default now(),
    primary key (projection, topic, partition)
);

-- The archive: every event once, in log order per partition, hash-chained.
create table archive (
    seq            bigint generated always as identity unique,  -- global archiving order
    topic          text        not null,
    partition      int         not null,
    position       bigint      not null,  -- dense per partition: 0, 1, 2, ...
    log_offset     bigint      not null,  -- offset in the current broker log (moves on re-seed)
    event_id       uuid        not null unique,
    event_type     text        not null,
    schema_version int         not null,
    place          text        not null,
    aggregate_id   text        not null,
    aggregate_seq  int         not null,
    actor_id       text        not null,
    actor_role     text        not null,
    occurred_at    timestamptz not null,
    recorded_at    timestamptz not null,
    body           bytea       not null,  -- the canonical JSON that was hashed
    prev_hash      bytea       not null,
    hash           bytea       not null,
    archived_at    timestamptz not null default now(),
    primary key (topic, partition, position)
);
create index archive_place on archive (place text_pattern_ops, seq);
create index archive_aggregate on archive (aggregate_id, aggregate_seq);

-- The head of each partition's chain, so a batch finds its predecessor in one look-up.
create table archive_heads (
    topic     text   not null,
    partition int    not null,
    position  bigint not null,
    hash      bytea  not null,
    primary key (topic, partition)
);

-- A second copy of an event id (an app's retry, or a conflicting body) is recorded, not archived.
create table archive_duplicates (
    id          bigint generated always as identity primary key,
    event_id    uuid        not null,
    topic       text        not null,
    partition   int         not null,
    log_offset  bigint      not null,
    same_body   boolean     not null,
    seen_at     timestamptz not null default now()
);
create index archive_duplicates_event on archive_duplicates (event_id);

-- Ingest receipts: the first answer given for an event id, and the body it was given for.
create table ingest_receipts (
    event_id    uuid        primary key,
    body_digest text        not null,
    topic       text        not null,
    partition   int         not null,
    log_offset  bigint      not null,
    received_at timestamptz not null default now()
);
