-- Every place that ever had a fact, at its depth: the grids under a place, without a scan of
-- the daily grain (patrol coverage lists the grids not patrolled lately).
create table rate_places (
    place text primary key,
    depth int  not null
);
create index rate_places_depth on rate_places (depth, place text_pattern_ops);
insert into rate_places select distinct place, depth from rate_daily;

-- One measure's rows under a place, by day (patrols of the last days, a grid's last patrol).
create index rate_daily_measure on rate_daily (measure, depth, place text_pattern_ops, day);
