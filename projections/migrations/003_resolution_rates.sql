-- The facts behind every resolution-rate figure: one row per counted thing, with its event.
create table rate_facts (
    measure     text   not null,
    day         date   not null,   -- Asia/Shanghai calendar day it counts on
    grid        text   not null,
    incident_id text   not null,   -- the matter (a patrol's id for `patrolled`)
    event_id    uuid,              -- null for facts of the matter as it stands (due ...)
    value       double precision   -- a duration in seconds, or a satisfaction score
);
create index rate_facts_matter on rate_facts (incident_id);
create unique index rate_facts_event on rate_facts (event_id, measure) where event_id is not null;
create index rate_facts_place on rate_facts (measure, grid text_pattern_ops, day);

-- Their counts per place at every level (county 1 .. grid 4) and day: any period is a sum.
create table rate_daily (
    place   text   not null,
    depth   int    not null,
    day     date   not null,
    measure text   not null,
    n       bigint not null,
    total   numeric not null,  -- exact sum of values (durations to the microsecond, scores)
    primary key (place, day, measure)
);
create index rate_daily_children on rate_daily (depth, place text_pattern_ops, day);
