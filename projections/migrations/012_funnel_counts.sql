-- Matters per place (county 1 .. grid 4) and stage now, and how many of them are overdue:
-- the funnel reads a row per stage instead of counting every chain under a place.
create table funnel_counts (
    place   text   not null,
    depth   int    not null,
    stage   text   not null,
    n       bigint not null,
    overdue bigint not null,
    primary key (place, stage)
);
insert into funnel_counts
    select array_to_string(parts[1:d], '/'), d, stage, count(*), count(*) filter (where overdue)
    from (select string_to_array(grid, '/') as parts, stage, overdue from five_have
          where grid is not null) as m, generate_series(1, array_length(parts, 1)) as d
    group by 1, 2, 3;
