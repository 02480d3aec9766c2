-- Each resident's data key (events/personal.py), wrapped by the master key (GRIDGOV_MASTER_KEY).
-- Personal values on the log are sealed under it: deleting a person's row makes every copy in
-- the log, the archive and the read models unreadable at once (crypto-shredding). A person met
-- again after an erasure gets a new key, which cannot open what the old one sealed.
create table person_keys (
    person_id  text primary key,
    grid       text not null,
    key_id     uuid not null unique,
    wrapped    bytea not null,
    created_at timestamptz not null default now()
);
