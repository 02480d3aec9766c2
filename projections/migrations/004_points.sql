-- Points (积分制): each aggregate's timeline (an account's, or a published ranking's), what the
-- ledger and the points decider fold; a copy of an event id adds nothing.
create table points_timeline (
    aggregate_id text  not null,
    event_id     uuid  not null,
    body         bytea not null,
    primary key (aggregate_id, event_id)
);

-- Per account, the figures that do not depend on the time asked (whether an award has posted
-- does: see points_transfers.posts_at).
create table points_accounts (
    account_id     text primary key,
    grid           text        not null,  -- where the account's first event put it
    joined_at      timestamptz not null,  -- its first event: a household of the scheme since
    claims_pending int         not null,
    awarded        bigint      not null,  -- awards not voided, posted or in review
    redeemed       bigint      not null,  -- posted redemptions
    reserved       bigint      not null,  -- redemptions waiting for the goods to be taken
    last_seq       int         not null   -- the last decided sequence number (a watermark)
);
create index points_accounts_grid on points_accounts (grid text_pattern_ops);

-- Transfers, TigerBeetle-style: one debit, one credit, one positive amount. Awards go from
-- '@scheme' to the account and post by themselves at posts_at unless voided first ('open');
-- redemptions go from the account to '@bank' and post when the goods are taken.
create table points_transfers (
    transfer_id    uuid primary key,  -- the event that opened it
    account_id     text        not null,
    kind           text        not null check (kind in ('award', 'redemption')),
    debit_account  text        not null,
    credit_account text        not null,
    amount         bigint      not null check (amount > 0),
    status         text        not null check (status in ('open', 'posted', 'voided')),
    grid           text        not null,
    rule           text,
    rule_version   int,
    source_id      text,
    item           text,
    deed_at        timestamptz,
    month          text,        -- the deed's month, Asia/Shanghai
    posts_at       timestamptz,
    seq            int         not null,
    resolved_seq   int,         -- the event that posted or voided it
    decided_at     timestamptz not null
);
-- the same deed is never paid twice to one account under one rule
create unique index points_awards_once on points_transfers (account_id, source_id, rule)
    where kind = 'award' and status <> 'voided';
create index points_transfers_account on points_transfers (account_id);
create index points_transfers_grid on points_transfers (grid text_pattern_ops, month)
    where kind = 'award';

-- Published rankings (公示): frozen facts, one per compound and period (2026-05 or 2026H1).
create table points_rankings (
    compound     text        not null,
    period       text        not null,
    event_id     uuid        not null unique,
    ranks        jsonb       not null,
    progress     jsonb,
    watermark    jsonb       not null,  -- account -> last decided sequence number counted
    tie_break    text        not null,
    published_at timestamptz not null,
    published_by text        not null,
    primary key (compound, period)
);

-- The points decider's answers: the first per command id, so a retried command emits nothing.
create table points_command_outcomes (
    command_id   uuid primary key,
    aggregate_id text        not null,  -- the account, or the ranking
    grid         text        not null,  -- its place: who may ask for the answer
    status       text        not null,  -- accepted | rejected
    code         text,
    reason       text,
    events       jsonb       not null,
    decided_at   timestamptz not null default now()
);
