-- The same counts per place and calendar month (`day` is the month's first day): a county's
-- year reads 12 rows a measure instead of 365; the days at a period's edges still come from
-- `rate_daily`.
create table rate_monthly (
    place   text   not null,
    depth   int    not null,
    day     date   not null,
    measure text   not null,
    n       bigint not null,
    total   numeric not null,
    primary key (place, day, measure)
);
create index rate_monthly_children on rate_monthly (depth, place text_pattern_ops, day);
insert into rate_monthly
    select place, depth, date_trunc('month', day)::date, measure, sum(n), sum(total)
    from rate_daily group by 1, 2, 3, 4;
