-- Master key rotation (services/personal.py): each data key records which master key of the
-- ring (GRIDGOV_MASTER_KEYS) wrapped it; keys wrapped before rings were wrapped by
-- GRIDGOV_MASTER_KEY, whose id is m1. `gridgov person rewrap` moves them to the current key.
alter table person_keys add column master_key_id text not null default 'm1';
alter table person_keys alter column master_key_id drop default;
create index person_keys_master_key_id on person_keys (master_key_id);

-- The key that makes person ids (a keyed HMAC of grid, name and phone). It must outlive every
-- master key, or rotation would change who a person is: so it is kept here, wrapped by the
-- ring like a data key, made once from the first master key (as it was derived before rings).
create table person_id_key (
    singleton     boolean primary key default true check (singleton),
    master_key_id text not null,
    wrapped       bytea not null
);
