-- The rate moves a rebuild holds back (`resolution_rates.record`) until its end, when they are
-- added up per grid, day and measure and rolled up once (`roll_up_held`): rolling each batch's
-- moves up was most of PostgreSQL's work in a rebuild. The live chain rolls up per batch and
-- leaves this table empty.
create table held_moves (
    grid    text   not null,
    day     date   not null,
    measure text   not null,
    n       bigint not null,
    micros  bigint
);
