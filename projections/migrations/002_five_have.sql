-- Each incident's timeline: the events the chain is folded from (a copy of an id adds nothing).
create table incident_timeline (
    incident_id text  not null,
    event_id    uuid  not null,
    body        bytea not null,
    primary key (incident_id, event_id)
);

-- The five-have chain per incident: five named links with times, stage, owner, deadline.
create table five_have (
    incident_id            text primary key,
    kind                   text,
    category               text,
    grid                   text,
    title                  text,
    stage                  text not null,
    level                  text not null,
    inspect_by text, inspect_role text, inspect_at timestamptz,
    report_by text, report_role text, report_at timestamptz,
    own_by text, own_role text, own_at timestamptz,
    resolve_by text, resolve_role text, resolve_at timestamptz,
    supervise_by text, supervise_role text, supervise_at timestamptz,
    assignee_id            text,
    owner_id               text,
    deadline               timestamptz,
    overdue                boolean not null,
    overdue_count          int not null,
    escalations            jsonb not null,
    reopen_count           int not null,
    rework_count           int not null,
    extension_count        int not null,
    return_count           int not null,
    paused_seconds         double precision not null,
    mediations             jsonb not null,
    satisfaction           int,
    report_to_own_s        double precision,
    own_to_resolve_s       double precision,
    resolve_to_supervise_s double precision,
    chain_complete         boolean not null,
    closed_at              timestamptz,
    last_seq               int not null,
    last_escalated_at      timestamptz
);
create index five_have_grid on five_have (grid text_pattern_ops, incident_id);
create index five_have_open_deadline on five_have (deadline)
    where stage in ('reported', 'assigned', 'owned');  -- where the SLA clock runs

-- Command outcomes: the first answer to each command id, so a retried command emits nothing.
create table command_outcomes (
    command_id  uuid primary key,
    incident_id text        not null,
    status      text        not null,  -- accepted | rejected
    code        text,
    reason      text,
    events      jsonb       not null,  -- [{event_id, event_type, topic, partition, offset}]
    decided_at  timestamptz not null default now()
);
