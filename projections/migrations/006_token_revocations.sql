-- Revoked users and devices: a token whose `sub` (user) or `device` is here, issued at or
-- before `revoked_at`, is refused. Every API process caches this table and re-reads it when
-- told on `gridgov_revocations` (any write notifies, a hand-made one too).
create table token_revocations (
    kind       text not null check (kind in ('user', 'device')),
    subject    text not null,
    revoked_at timestamptz not null,
    revoked_by text not null,
    reason     text not null,
    primary key (kind, subject)
);
create function token_revocations_changed() returns trigger language plpgsql as $$
begin
    perform pg_notify('gridgov_revocations', '');
    return null;
end $$;
create trigger token_revocations_changed after insert or update or delete on token_revocations
    for each statement execute function token_revocations_changed();
