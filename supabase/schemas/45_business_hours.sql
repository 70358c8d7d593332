-- Business hours: a working calendar per tenant (a week of local opening ranges in an IANA zone,
-- and holidays), and a clock per rule (alert_rules.clock, in 30_alerts.sql). On the `business`
-- clock a rule's threshold, escalation step and overdue delay count working time only: `Nd` is N
-- working days (the same local clock time N working days later), `Nh`/`Nm` are working hours and
-- minutes. Working time is read on the calendar's local clock, so openings follow it across
-- daylight-saving changes. The arithmetic is whole weeks plus a remainder (O(1) per lead, a step
-- per holiday in the way), and due times stay stored in lead_state, so the sweep reads only what is
-- due whatever the clock. The functions that use it (log_activity, the sweep's, set_rule, ...) live
-- with their concepts.

-- Tables ------------------------------------------------------------------------------------------

create table public.business_calendars (
  tenant_id   text not null,                  -- '*' holds the default; a tenant's own row replaces it
  time_zone   text not null,                  -- IANA zone of the week's clock times and of the holidays
  week        jsonb not null,                 -- {"mon": [["09:00", "18:00"]], ..., "sun": []} as the API shows it
  holidays    date[] not null default '{}',   -- whole local dates without working time, ascending, each once
  opens       integer[] not null,             -- the week's working ranges as minutes of the week (Monday 00:00
  closes      integer[] not null,             -- is 0), ascending, each ending (exclusive) by its day's 24:00
  day_minutes integer[] not null,             -- working minutes of each day of the week, Monday first
  updated_at  timestamptz not null default now(),
  -- The week and the holidays laid out for the arithmetic (lay_out_calendar, below):
  working_weekdays integer[] not null,        -- the days of the week with working hours (0 is Monday), in order
  days_through     integer[] not null,        -- how many of them each day of the week closes, Monday first
  worked_by_close  integer[] not null,        -- working minutes of the week up to each range's closing
  closed_days      date[] not null,           -- the holidays that fall on a working day, ascending
  closed_day_ranks integer[] not null,        -- each one's rank among working days since Julian day 0, less the holidays before it
  closed_minutes   integer[] not null,        -- the working minutes it and the holidays before it take away
  constraint business_calendars_pkey primary key (tenant_id),
  constraint business_calendars_ranges_paired check (cardinality(opens) = cardinality(closes)),
  constraint business_calendars_week_not_empty check (cardinality(opens) > 0),
  constraint business_calendars_seven_days check (cardinality(day_minutes) = 7)
);

-- Grants ------------------------------------------------------------------------------------------

revoke all on table public.business_calendars from public, anon, authenticated, service_role;
grant select on table public.business_calendars to authenticated;
grant select, insert, update, delete on table public.business_calendars to service_role;
alter table public.business_calendars enable row level security;

-- Policies ----------------------------------------------------------------------------------------

create policy "Calendars are visible to members of their tenant" on public.business_calendars
  for select to authenticated
  using (tenant_id = '*' or (select public.sees_all_tenants()) or tenant_id = (select public.current_tenant()));

-- Functions: the arithmetic -----------------------------------------------------------------------

/** The calendar in force for a tenant: its own, else the default (Mon–Fri 09:00–18:00 Europe/Paris). */
create function public.calendar_for(p_tenant text) returns public.business_calendars
language sql stable
as $$
  select c.*
  from public.business_calendars c
  where c.tenant_id in (p_tenant, '*')
  order by c.tenant_id = '*'
  limit 1
$$;
grant execute on function public.calendar_for(text) to authenticated, service_role;

-- The arithmetic reads the week and the holidays as laid out once per calendar (lay_out_calendar:
-- the columns after updated_at), so that an answer is a few array lookups: the range an instant
-- falls in, the n-th working day after a day, the working time up to a range's closing; the holidays
-- that fall on a working day count only when one is in the way (binary searches, width_bucket).
-- Days are counted from Julian day 0 (4714-11-24 BC, a Monday). It takes a calendar's fields one by
-- one: reading a field of a row passed to PL/pgSQL expands the whole row first, which costs more
-- than the arithmetic itself. The functions taking a calendar row (`clock_add` and those below it)
-- are SQL one-liners that pass its fields on.

/**
 * What the arithmetic reads of a calendar besides its ranges: the days of the week with working
 * hours, how many of them each day of the week closes, the working minutes of the week up to each
 * range's closing, and the holidays that take working time away (on a working day of the week) with,
 * for each, its rank among the working days less the holidays before it and the working minutes
 * that it and the holidays before it take away.
 */
create function public.lay_out_calendar(
  p_opens integer[], p_closes integer[], p_day_minutes integer[], p_holidays date[],
  out working_weekdays integer[], out days_through integer[], out worked_by_close integer[],
  out closed_days date[], out closed_day_ranks integer[], out closed_minutes integer[])
language plpgsql immutable
set search_path = ''
as $$
declare
  v_worked integer := 0;
  v_lost   integer := 0;
  v_jd     integer;
  v_day    date;
begin
  worked_by_close := '{}';
  for i in 1 .. cardinality(p_opens) loop
    v_worked := v_worked + p_closes[i] - p_opens[i];
    worked_by_close := worked_by_close || v_worked;
  end loop;
  working_weekdays := '{}';
  days_through := '{}';
  for d in 0 .. 6 loop
    if p_day_minutes[d + 1] > 0 then
      working_weekdays := working_weekdays || d;
    end if;
    days_through := days_through || cardinality(working_weekdays);
  end loop;
  closed_days := '{}';
  closed_day_ranks := '{}';
  closed_minutes := '{}';
  foreach v_day in array p_holidays loop
    v_jd := v_day - date '4714-11-24 BC';
    continue when p_day_minutes[v_jd % 7 + 1] = 0;
    closed_days := closed_days || v_day;
    closed_day_ranks := closed_day_ranks
      || (v_jd / 7 * cardinality(working_weekdays) + days_through[v_jd % 7 + 1] - cardinality(closed_days));
    v_lost := v_lost + p_day_minutes[v_jd % 7 + 1];
    closed_minutes := closed_minutes || v_lost;
  end loop;
end
$$;
grant execute on function public.lay_out_calendar(integer[], integer[], integer[], date[]) to authenticated, service_role;

/**
 * The first working time at or after `p_local` on the calendar's local clock: `p_local` itself within
 * a range, else the next opening; on a holiday, the first opening of the next working day that is
 * not one (its rank among them, then the day by the week's table).
 */
create function public.next_opening_local(
  p_opens integer[], p_closes integer[], p_weekdays integer[], p_days_through integer[],  -- a calendar's
  p_closed date[], p_ranks integer[],                                                      -- layout
  p_local timestamp) returns timestamp
language plpgsql immutable
as $$
declare
  v_day    date := p_local::date;
  v_dow    integer := (v_day - date '4714-11-24 BC') % 7;
  v_minute integer := v_dow * 1440 + date_part('hour', p_local)::integer * 60 + date_part('minute', p_local)::integer;
  v_i      integer := width_bucket(v_minute, p_closes) + 1;  -- the first range not closed by then
  v_at     timestamp := case
    when v_i > cardinality(p_opens) then v_day + (p_opens[1] + 10080 - v_dow * 1440) * interval '1 minute'
    when p_opens[v_i] > v_minute then v_day + (p_opens[v_i] - v_dow * 1440) * interval '1 minute'
    else p_local
  end;
  v_closed integer := width_bucket(v_at::date, p_closed);  -- holidays up to that day
  v_rank   integer;
begin
  if v_closed = 0 or p_closed[v_closed] <> v_at::date then
    return v_at;
  end if;
  -- A holiday: the next working day that is not one, by its rank among those (from 0), and among working days.
  v_rank := (v_at::date - date '4714-11-24 BC') / 7 * cardinality(p_weekdays)
            + p_days_through[(v_at::date - date '4714-11-24 BC') % 7 + 1] - v_closed;
  v_rank := v_rank + width_bucket(v_rank, p_ranks);
  v_dow := p_weekdays[v_rank % cardinality(p_weekdays) + 1];
  return date '4714-11-24 BC' + (v_rank / cardinality(p_weekdays) * 7 + v_dow)
         + (p_opens[width_bucket(v_dow * 1440, p_closes) + 1] - v_dow * 1440) * interval '1 minute';
end
$$;
grant execute on function public.next_opening_local(integer[], integer[], integer[], integer[], date[], integer[], timestamp)
  to authenticated, service_role;

/**
 * The first working instant at or after `p_at`: `p_at` itself within working hours, else the next
 * opening of the calendar (on its local clock, holidays skipped).
 */
create function public.next_opening(
  p_zone text, p_opens integer[], p_closes integer[], p_weekdays integer[], p_days_through integer[],  -- a calendar
  p_closed date[], p_ranks integer[],
  p_at timestamptz) returns timestamptz
language plpgsql immutable
as $$
declare
  v_local timestamp;
  v_open  timestamp;
begin
  if p_at is null or not isfinite(p_at) then
    return p_at;
  end if;
  v_local := p_at at time zone p_zone;
  v_open := public.next_opening_local(p_opens, p_closes, p_weekdays, p_days_through, p_closed, p_ranks, v_local);
  if v_open = v_local then
    return p_at;
  end if;
  return v_open at time zone p_zone;
end
$$;
grant execute on function public.next_opening(text, integer[], integer[], integer[], integer[], date[], integer[], timestamptz)
  to authenticated, service_role;

/**
 * `p_at` plus `p_span` of working time: the earliest instant by which that much working time has
 * passed since `p_at`. From the start's place in its week's working time, whole weeks and then the
 * range in which the rest runs out; the holidays met on the way give their working time back, which
 * is counted on from there (a step more per run of holidays in the way).
 */
create function public.add_working_time(
  p_zone text, p_opens integer[], p_closes integer[], p_worked integer[],  -- a calendar
  p_weekdays integer[], p_days_through integer[], p_closed date[], p_ranks integer[], p_closed_minutes integer[],
  p_at timestamptz, p_span interval)
returns timestamptz
language plpgsql immutable
as $$
declare
  v_left   bigint := (date_part('epoch', p_span) * 1000000)::bigint;  -- microseconds of working time to count
  v_week   bigint := p_worked[cardinality(p_worked)] * 60000000::bigint;  -- the week's
  v_local  timestamp;
  v_jd     integer;
  v_us     bigint;
  v_i      integer;
  v_weeks  integer;
  v_closed integer;
  v_count  integer;
begin
  if p_at is null or p_span is null or not isfinite(p_at) then
    return p_at + p_span;
  end if;
  if v_left <= 0 then
    return p_at;
  end if;
  -- The start: its day, the microseconds of its week, its range (outside working hours or on a
  -- holiday, those of the next opening).
  v_local := p_at at time zone p_zone;
  v_jd := v_local::date - date '4714-11-24 BC';
  v_us := v_jd % 7 * 86400000000 + (date_part('epoch', v_local::time) * 1000000)::bigint;
  v_i := width_bucket((v_us / 60000000)::integer, p_closes) + 1;
  if not coalesce(p_opens[v_i] * 60000000::bigint <= v_us, false)
     or p_closed[width_bucket(v_local::date, p_closed)] = v_local::date then
    v_local := public.next_opening_local(p_opens, p_closes, p_weekdays, p_days_through, p_closed, p_ranks, v_local);
    v_jd := v_local::date - date '4714-11-24 BC';
    v_us := v_jd % 7 * 86400000000 + (date_part('epoch', v_local::time) * 1000000)::bigint;
    v_i := width_bucket((v_us / 60000000)::integer, p_closes) + 1;
  end if;
  v_closed := width_bucket(v_local::date, p_closed);
  loop
    -- The week's working time up to the end (the start's in its range, plus what is left), whole
    -- weeks, then the range by whose end the week's working time reaches it, back on the clock.
    v_us := v_us + v_left + (p_worked[v_i] - p_closes[v_i]) * 60000000::bigint;
    v_weeks := ((v_us - 1) / v_week)::integer;
    v_us := v_us - v_weeks * v_week;
    v_i := width_bucket(((v_us - 1) / 60000000)::integer, p_worked) + 1;
    v_us := v_us + (p_closes[v_i] - p_worked[v_i]) * 60000000::bigint;
    v_jd := v_jd - v_jd % 7 + 7 * v_weeks;  -- that week's Monday
    -- The holidays on the way (up to the day of the last working microsecond) give their time back.
    v_count := width_bucket(date '4714-11-24 BC' + v_jd + ((v_us - 1) / 86400000000)::integer, p_closed);
    exit when v_count = v_closed;
    v_left := (p_closed_minutes[v_count] - coalesce(p_closed_minutes[v_closed], 0)) * 60000000::bigint;
    v_closed := v_count;
  end loop;
  return (date '4714-11-24 BC' + v_jd + v_us * interval '1 microsecond') at time zone p_zone;
end
$$;
grant execute on function public.add_working_time(text, integer[], integer[], integer[], integer[], integer[], date[],
                                                  integer[], integer[], timestamptz, interval)
  to authenticated, service_role;


/**
 * `p_at` plus `p_days` working days: the same local clock time that many working days later. An
 * instant outside working hours counts from the next opening; a result outside working hours (a
 * shorter day, a clock change) moves to the next opening. The day is found by its rank among the
 * working days that are not holidays: no step per day, week or holiday.
 */
create function public.add_working_days(
  p_zone text, p_opens integer[], p_closes integer[], p_weekdays integer[], p_days_through integer[],  -- a calendar
  p_closed date[], p_ranks integer[],
  p_at timestamptz, p_days integer)
returns timestamptz
language plpgsql immutable
as $$
declare
  v_start  timestamp;
  v_jd     integer;
  v_minute integer;
  v_rank   integer;
  v_local  timestamp;
  v_end    timestamptz;
begin
  if p_at is null or p_days is null or not isfinite(p_at) then
    return p_at + make_interval(days => p_days);
  end if;
  if p_days <= 0 then
    return p_at;
  end if;
  -- The start: p_at within working hours, else the next opening.
  v_start := p_at at time zone p_zone;
  v_jd := v_start::date - date '4714-11-24 BC';
  v_minute := v_jd % 7 * 1440 + date_part('hour', v_start)::integer * 60 + date_part('minute', v_start)::integer;
  if not coalesce(p_opens[width_bucket(v_minute, p_closes) + 1] <= v_minute, false)
     or p_closed[width_bucket(v_start::date, p_closed)] = v_start::date then
    v_start := public.next_opening_local(p_opens, p_closes, p_weekdays, p_days_through, p_closed, p_ranks, v_start);
    -- The start is that opening's instant, read back on the clock: an opening the clock skips (in a
    -- daylight-saving gap) starts when the clock shows the time after the gap.
    v_start := (v_start at time zone p_zone) at time zone p_zone;
    v_jd := v_start::date - date '4714-11-24 BC';
  end if;
  -- The rank (from 0) of the day p_days after the start's among the working days that are not
  -- holidays, then among the working days, then that day (its Julian day) at the start's clock time.
  v_rank := v_jd / 7 * cardinality(p_weekdays) + p_days_through[v_jd % 7 + 1] - width_bucket(v_start::date, p_closed)
            + p_days - 1;
  v_rank := v_rank + width_bucket(v_rank, p_ranks);
  v_jd := v_rank / cardinality(p_weekdays) * 7 + p_weekdays[v_rank % cardinality(p_weekdays) + 1];
  v_local := date '4714-11-24 BC' + v_jd + v_start::time;
  v_end := v_local at time zone p_zone;
  v_minute := v_jd % 7 * 1440 + date_part('hour', v_local)::integer * 60 + date_part('minute', v_local)::integer;
  if v_end at time zone p_zone = v_local and p_opens[width_bucket(v_minute, p_closes) + 1] <= v_minute then
    return v_end;  -- the clock showed that time that day, within its working hours
  end if;
  return public.next_opening(p_zone, p_opens, p_closes, p_weekdays, p_days_through, p_closed, p_ranks, v_end);
end
$$;
grant execute on function public.add_working_days(text, integer[], integer[], integer[], integer[], date[], integer[],
                                                  timestamptz, integer)
  to authenticated, service_role;


/**
 * When a span started at `p_at` ends on a rule's clock: elapsed time on the calendar clock; on the
 * business clock, working days for a whole number of days (`3d`, and `24h` too), else working time.
 */
create function public.clock_add(p_cal public.business_calendars, p_business boolean, p_at timestamptz, p_span interval)
returns timestamptz
language sql stable  -- as timestamptz + interval is; and so inlined into the caller's query
as $$
  select case
    when not coalesce(p_business, false) or p_at is null or p_span is null then p_at + p_span
    when date_part('epoch', p_span) / 86400 = trunc(date_part('epoch', p_span) / 86400)
      then public.add_working_days(p_cal.time_zone, p_cal.opens, p_cal.closes, p_cal.working_weekdays,
                                   p_cal.days_through, p_cal.closed_days, p_cal.closed_day_ranks,
                                   p_at, (date_part('epoch', p_span) / 86400)::integer)
    else public.add_working_time(p_cal.time_zone, p_cal.opens, p_cal.closes, p_cal.worked_by_close,
                                 p_cal.working_weekdays, p_cal.days_through, p_cal.closed_days,
                                 p_cal.closed_day_ranks, p_cal.closed_minutes, p_at, p_span)
  end
$$;
grant execute on function public.clock_add(public.business_calendars, boolean, timestamptz, interval)
  to authenticated, service_role;


/**
 * Where a local time stands in working time, in microseconds since Julian day 0 (the holidays'
 * working time left out): whole weeks, then the week's working time up to it. Working time between
 * two instants is the difference of theirs.
 */
create function public.working_time_at(
  p_opens integer[], p_closes integer[], p_worked integer[],  -- a calendar's
  p_closed date[], p_closed_minutes integer[],               -- layout
  p_local timestamp) returns bigint
language plpgsql immutable
as $$
declare
  v_closed integer := width_bucket(p_local::date, p_closed);  -- holidays up to that day
  v_local  timestamp := p_local;
  v_jd     integer;
  v_us     bigint;
  v_i      integer;
begin
  if p_closed[v_closed] = p_local::date then  -- a holiday: it stands where that day starts
    v_local := p_local::date::timestamp;
    v_closed := v_closed - 1;
  end if;
  v_jd := v_local::date - date '4714-11-24 BC';
  v_us := v_jd % 7 * 86400000000 + (date_part('epoch', v_local::time) * 1000000)::bigint;
  v_i := width_bucket((v_us / 60000000)::integer, p_closes) + 1;
  return (v_jd / 7 * p_worked[cardinality(p_worked)]::bigint - coalesce(p_closed_minutes[v_closed], 0)) * 60000000
         + case
             when v_i > cardinality(p_opens) then p_worked[cardinality(p_worked)] * 60000000::bigint
             else (p_worked[v_i] - p_closes[v_i] + p_opens[v_i]) * 60000000::bigint
                  + greatest(0, v_us - p_opens[v_i] * 60000000::bigint)
           end;
end
$$;
grant execute on function public.working_time_at(integer[], integer[], integer[], date[], integer[], timestamp)
  to authenticated, service_role;

/**
 * Seconds of working time between two instants (none when `p_to` is not after `p_from` on the
 * local clock): the difference of where they stand in working time.
 */
create function public.working_seconds_between(
  p_zone text, p_opens integer[], p_closes integer[], p_worked integer[],  -- a calendar
  p_closed date[], p_closed_minutes integer[],
  p_from timestamptz, p_to timestamptz)
returns numeric
language sql immutable
as $$
  select greatest(0, public.working_time_at(p_opens, p_closes, p_worked, p_closed, p_closed_minutes, p_to at time zone p_zone)
                     - public.working_time_at(p_opens, p_closes, p_worked, p_closed, p_closed_minutes,
                                              p_from at time zone p_zone)) / 1000000.0
$$;
grant execute on function public.working_seconds_between(text, integer[], integer[], integer[], date[], integer[],
                                                         timestamptz, timestamptz)
  to authenticated, service_role;

/** `next_opening` of a calendar row. */
create function public.next_opening(p_cal public.business_calendars, p_at timestamptz) returns timestamptz
language sql immutable
as $$
  select public.next_opening(p_cal.time_zone, p_cal.opens, p_cal.closes, p_cal.working_weekdays, p_cal.days_through,
                             p_cal.closed_days, p_cal.closed_day_ranks, p_at)
$$;
grant execute on function public.next_opening(public.business_calendars, timestamptz) to authenticated, service_role;

/** `add_working_time` of a calendar row. */
create function public.add_working_time(p_cal public.business_calendars, p_at timestamptz, p_span interval) returns timestamptz
language sql immutable
as $$
  select public.add_working_time(p_cal.time_zone, p_cal.opens, p_cal.closes, p_cal.worked_by_close,
                                 p_cal.working_weekdays, p_cal.days_through, p_cal.closed_days,
                                 p_cal.closed_day_ranks, p_cal.closed_minutes, p_at, p_span)
$$;
grant execute on function public.add_working_time(public.business_calendars, timestamptz, interval)
  to authenticated, service_role;

/** `add_working_days` of a calendar row. */
create function public.add_working_days(p_cal public.business_calendars, p_at timestamptz, p_days integer) returns timestamptz
language sql immutable
as $$
  select public.add_working_days(p_cal.time_zone, p_cal.opens, p_cal.closes, p_cal.working_weekdays,
                                 p_cal.days_through, p_cal.closed_days, p_cal.closed_day_ranks, p_at, p_days)
$$;
grant execute on function public.add_working_days(public.business_calendars, timestamptz, integer) to authenticated, service_role;

/** `working_seconds_between` of a calendar row. */
create function public.working_seconds_between(p_cal public.business_calendars, p_from timestamptz, p_to timestamptz)
returns numeric
language sql immutable
as $$
  select public.working_seconds_between(p_cal.time_zone, p_cal.opens, p_cal.closes, p_cal.worked_by_close,
                                        p_cal.closed_days, p_cal.closed_minutes, p_from, p_to)
$$;
grant execute on function public.working_seconds_between(public.business_calendars, timestamptz, timestamptz)
  to authenticated, service_role;

-- Functions: the calendar over the API ------------------------------------------------------------

/** A calendar as the API shows it; `source` says whether it is the default or the tenant's own. */
create function public.calendar_json(p_cal public.business_calendars) returns jsonb
language sql immutable
as $$
  select jsonb_build_object(
    'timeZone', p_cal.time_zone, 'week', p_cal.week,
    'holidays', coalesce((select jsonb_agg(to_char(h, 'YYYY-MM-DD') order by h) from unnest(p_cal.holidays) h), '[]'),
    'source', case when p_cal.tenant_id = '*' then 'default' else 'tenant' end)
$$;
grant execute on function public.calendar_json(public.business_calendars) to authenticated, service_role;

/** The working calendar in force for a tenant (any member of it). */
create function public.get_calendar(p_tenant text) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  perform public.assert_acts_in(p_tenant);
  return jsonb_build_object('calendar', public.calendar_json(public.calendar_for(p_tenant)));
end
$$;
grant execute on function public.get_calendar(text) to authenticated, service_role;

/**
 * A calendar read from the API's body `{timeZone, week: {mon: [["09:00", "18:00"]], ...}, holidays}`,
 * validated (LW422 naming the field: an unknown zone, a time that is not HH:MM, a range that does
 * not end after it starts or overlaps another, an empty week, a holiday that is not a date), with
 * its ranges laid out for the arithmetic. Days left out have no working hours.
 */
create function public.parse_calendar(p_tenant text, p_body jsonb) returns public.business_calendars
language plpgsql stable
set search_path = ''
as $$
declare
  v_cal    public.business_calendars;
  v_days   constant text[] := array['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
  v_key    text;
  v_ranges jsonb;
  v_range  jsonb;
  v_start  integer;
  v_end    integer;
  v_prev   integer;
  v_field  text;
  v_item   jsonb;
  v_week   jsonb := '{}'::jsonb;
  v_sorted jsonb;
begin
  if jsonb_typeof(p_body) is distinct from 'object' then
    perform public.raise_error('LW422', 'the calendar is an object {timeZone, week, holidays}', 'calendar');
  end if;
  v_cal.tenant_id := p_tenant;
  v_cal.time_zone := p_body ->> 'timeZone';
  if jsonb_typeof(p_body -> 'timeZone') is distinct from 'string'
     or not exists (select from pg_catalog.pg_timezone_names z where z.name = v_cal.time_zone) then
    perform public.raise_error('LW422', 'timeZone must be an IANA time zone such as Europe/Paris', 'timeZone');
  end if;
  if jsonb_typeof(p_body -> 'week') is distinct from 'object' then
    perform public.raise_error('LW422', 'week must be an object of days (mon ... sun) to lists of ["HH:MM", "HH:MM"]', 'week');
  end if;
  for v_key in select jsonb_object_keys(p_body -> 'week') loop
    if not v_key = any (v_days) then
      perform public.raise_error('LW422', 'the days of the week are mon, tue, wed, thu, fri, sat and sun', 'week.' || v_key);
    end if;
  end loop;

  v_cal.opens := '{}';
  v_cal.closes := '{}';
  v_cal.day_minutes := '{}';
  for d in 1 .. 7 loop
    v_ranges := coalesce(p_body -> 'week' -> v_days[d], '[]');
    if jsonb_typeof(v_ranges) <> 'array' then
      perform public.raise_error('LW422', 'a day is a list of ["HH:MM", "HH:MM"] ranges', 'week.' || v_days[d]);
    end if;
    v_prev := null;
    v_sorted := '[]';
    v_cal.day_minutes := v_cal.day_minutes || 0;
    for v_range, v_field in
      select r.value, format('week.%s[%s]', v_days[d], r.ordinality - 1)
      from jsonb_array_elements(v_ranges) with ordinality r
      order by r.value ->> 0, r.ordinality
    loop
      if jsonb_typeof(v_range) <> 'array' or jsonb_array_length(v_range) <> 2
         or coalesce(v_range ->> 0, '') !~ '^([01][0-9]|2[0-3]):[0-5][0-9]$'
         or coalesce(v_range ->> 1, '') !~ '^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$'
         or jsonb_typeof(v_range -> 0) <> 'string' or jsonb_typeof(v_range -> 1) <> 'string' then
        perform public.raise_error('LW422', 'a range is ["HH:MM", "HH:MM"] (24:00 ends the day)', v_field);
      end if;
      v_start := split_part(v_range ->> 0, ':', 1)::integer * 60 + split_part(v_range ->> 0, ':', 2)::integer;
      v_end := split_part(v_range ->> 1, ':', 1)::integer * 60 + split_part(v_range ->> 1, ':', 2)::integer;
      if v_end <= v_start then
        perform public.raise_error('LW422', 'a range must end after it starts', v_field);
      end if;
      if v_start < v_prev then
        perform public.raise_error('LW422', 'ranges of one day must not overlap', v_field);
      end if;
      v_prev := v_end;
      v_cal.opens := v_cal.opens || ((d - 1) * 1440 + v_start);
      v_cal.closes := v_cal.closes || ((d - 1) * 1440 + v_end);
      v_cal.day_minutes[d] := v_cal.day_minutes[d] + (v_end - v_start);
      v_sorted := v_sorted || jsonb_build_array(v_range);
    end loop;
    v_week := v_week || jsonb_build_object(v_days[d], v_sorted);
  end loop;
  if cardinality(v_cal.opens) = 0 then
    perform public.raise_error('LW422', 'the week needs at least one working range', 'week');
  end if;
  v_cal.week := v_week;

  if coalesce(jsonb_typeof(p_body -> 'holidays'), 'array') <> 'array' then
    perform public.raise_error('LW422', 'holidays is a list of local dates "YYYY-MM-DD"', 'holidays');
  end if;
  for v_item, v_field in
    select h.value, format('holidays[%s]', h.ordinality - 1)
    from jsonb_array_elements(coalesce(p_body -> 'holidays', '[]')) with ordinality h
  loop
    if jsonb_typeof(v_item) <> 'string' or v_item #>> '{}' !~ '^\d{4}-\d{2}-\d{2}$'
       or to_char(to_date(v_item #>> '{}', 'YYYY-MM-DD'), 'YYYY-MM-DD') <> v_item #>> '{}' then
      perform public.raise_error('LW422', 'a holiday is a local date "YYYY-MM-DD"', v_field);
    end if;
  end loop;
  v_cal.holidays := coalesce((select array_agg(distinct (h #>> '{}')::date order by (h #>> '{}')::date)
                              from jsonb_array_elements(coalesce(p_body -> 'holidays', '[]')) h), '{}');
  select l.working_weekdays, l.days_through, l.worked_by_close, l.closed_days, l.closed_day_ranks, l.closed_minutes
  into v_cal.working_weekdays, v_cal.days_through, v_cal.worked_by_close, v_cal.closed_days, v_cal.closed_day_ranks,
       v_cal.closed_minutes
  from public.lay_out_calendar(v_cal.opens, v_cal.closes, v_cal.day_minutes, v_cal.holidays) l;
  v_cal.updated_at := now();
  return v_cal;
end
$$;
grant execute on function public.parse_calendar(text, jsonb) to authenticated, service_role;

/**
 * Replace the tenant's working calendar (admins of the tenant and platform staff). Takes effect at
 * once: the due times of its rules on the business clock are recomputed in the same transaction.
 */
create function public.set_calendar(p_tenant text, p_calendar jsonb) returns jsonb
language plpgsql
security definer  -- writes the tenant's calendar and its leads' state, which users cannot write themselves
set search_path = ''
as $$
declare
  v_cal  public.business_calendars;
  v_type text;
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  if p_tenant = '*' then
    perform public.raise_error('LW422', 'the default calendar is changed by a migration, not per tenant', 'tenant');
  end if;
  v_cal := public.parse_calendar(p_tenant, p_calendar);
  insert into public.business_calendars as c
  select v_cal.*
  on conflict (tenant_id) do update set
    time_zone = excluded.time_zone, week = excluded.week, holidays = excluded.holidays, opens = excluded.opens,
    closes = excluded.closes, day_minutes = excluded.day_minutes, updated_at = excluded.updated_at,
    working_weekdays = excluded.working_weekdays, days_through = excluded.days_through,
    worked_by_close = excluded.worked_by_close, closed_days = excluded.closed_days,
    closed_day_ranks = excluded.closed_day_ranks, closed_minutes = excluded.closed_minutes;
  for v_type in
    select r.type from public.rules_for(p_tenant) r
    where r.clock = 'business' and r.type in ('NoContact7d', 'NoReply3d', 'StaleLead30d', 'HighValueRisk')
  loop
    perform public.recompute_due_times(p_tenant, v_type);
  end loop;
  return jsonb_build_object('calendar', public.calendar_json(v_cal));
end
$$;
grant execute on function public.set_calendar(text, jsonb) to authenticated, service_role;

-- Data --------------------------------------------------------------------------------------------

insert into public.business_calendars
select c.*
from public.parse_calendar('*', '{"timeZone": "Europe/Paris", "week": {"mon": [["09:00", "18:00"]],
  "tue": [["09:00", "18:00"]], "wed": [["09:00", "18:00"]], "thu": [["09:00", "18:00"]], "fri": [["09:00", "18:00"]],
  "sat": [], "sun": []}}') c;

/**
 * The clocks of the time-based rules in force for a tenant (true: the business clock) and, when one
 * of them counts working time, the tenant's calendar (else null, and not read). One row; inlined.
 */
create function public.rule_clocks(p_tenant text)
returns table (business_no_contact boolean, business_no_reply boolean, business_stale boolean,
               business_high_value boolean, calendar public.business_calendars)
language sql stable
as $$
  select c.no_contact, c.no_reply, c.stale, c.high_value,
         case when c.no_contact or c.no_reply or c.stale or c.high_value then public.calendar_for(p_tenant) end
  from (select coalesce(bool_or(r.clock = 'business') filter (where r.type = 'NoContact7d'), false) as no_contact,
               coalesce(bool_or(r.clock = 'business') filter (where r.type = 'NoReply3d'), false) as no_reply,
               coalesce(bool_or(r.clock = 'business') filter (where r.type = 'StaleLead30d'), false) as stale,
               coalesce(bool_or(r.clock = 'business') filter (where r.type = 'HighValueRisk'), false) as high_value
        from public.rules_for(p_tenant) r) c
$$;
grant execute on function public.rule_clocks(text) to authenticated, service_role;

/**
 * What `log_activity` needs from the rules in force for a tenant, in one row: the thresholds of
 * the time-based rules (null where disabled), the settings of the ingest-time rules (their
 * `min_count` null where disabled), and the time-based rules' clocks (true: the business clock)
 * with, when one of them counts working time, the tenant's calendar (else null, and not read): what
 * `rule_thresholds` and `rule_clocks` answer, read in one pass over the rules. A table function so
 * that Postgres inlines it.
 */
create function public.rules_at_ingest(p_tenant text)
returns table (no_contact interval, no_reply interval, stale interval, high_value interval,
               hot_window interval, hot_count smallint, preferred_window interval, preferred_count smallint,
               business_no_contact boolean, business_no_reply boolean, business_stale boolean,
               business_high_value boolean, calendar public.business_calendars)
language sql stable
as $$
  select r.no_contact, r.no_reply, r.stale, r.high_value, r.hot_window, r.hot_count, r.preferred_window,
         r.preferred_count, r.business_no_contact, r.business_no_reply, r.business_stale, r.business_high_value,
         case when r.business_no_contact or r.business_no_reply or r.business_stale or r.business_high_value
              then public.calendar_for(p_tenant) end
  from (select max(r.threshold) filter (where r.type = 'NoContact7d' and r.enabled) as no_contact,
               max(r.threshold) filter (where r.type = 'NoReply3d' and r.enabled) as no_reply,
               max(r.threshold) filter (where r.type = 'StaleLead30d' and r.enabled) as stale,
               max(r.threshold) filter (where r.type = 'HighValueRisk' and r.enabled) as high_value,
               max(r.threshold) filter (where r.type = 'HotLead24h' and r.enabled) as hot_window,
               max(r.min_count) filter (where r.type = 'HotLead24h' and r.enabled) as hot_count,
               max(r.threshold) filter (where r.type = 'PreferredChannel' and r.enabled) as preferred_window,
               max(r.min_count) filter (where r.type = 'PreferredChannel' and r.enabled) as preferred_count,
               coalesce(bool_or(r.clock = 'business') filter (where r.type = 'NoContact7d'), false) as business_no_contact,
               coalesce(bool_or(r.clock = 'business') filter (where r.type = 'NoReply3d'), false) as business_no_reply,
               coalesce(bool_or(r.clock = 'business') filter (where r.type = 'StaleLead30d'), false) as business_stale,
               coalesce(bool_or(r.clock = 'business') filter (where r.type = 'HighValueRisk'), false)
                 as business_high_value
        from public.rules_for(p_tenant) r) r
$$;
grant execute on function public.rules_at_ingest(text) to authenticated, service_role;

/**
 * The next working morning after `p_now` on a calendar: today's first opening while it is still
 * ahead, else the first opening of the next working day (holidays skipped). What "snooze until
 * the next working morning" means.
 */
create function public.next_working_morning(p_cal public.business_calendars, p_now timestamptz)
returns timestamptz
language plpgsql immutable
set search_path = ''
as $$
declare
  v_local timestamp := p_now at time zone p_cal.time_zone;
  v_day   date := v_local::date;
  v_base  integer := (extract(isodow from v_local)::integer - 1) * 1440;
  v_first integer := (select min(o) from unnest(p_cal.opens) o where o >= v_base and o < v_base + 1440);
begin
  if v_first is not null and not v_day = any (p_cal.holidays)
     and v_local < v_day + (v_first - v_base) * interval '1 minute' then
    return (v_day + (v_first - v_base) * interval '1 minute') at time zone p_cal.time_zone;
  end if;
  return public.next_opening(p_cal, (v_day + 1)::timestamp at time zone p_cal.time_zone);
end
$$;
grant execute on function public.next_working_morning(public.business_calendars, timestamptz)
  to authenticated, service_role;

/** When the tenant's next working morning is (any member), `{at}`: what the snooze menu offers. */
create function public.get_next_working_morning(p_tenant text) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  perform public.assert_acts_in(p_tenant);
  return jsonb_build_object('at', public.next_working_morning(public.calendar_for(p_tenant), now()));
end
$$;
grant execute on function public.get_next_working_morning(text) to authenticated, service_role;

/**
 * The alerts' analytics (`alert_analytics`, same range, zone and scope) with time to resolve and
 * the "resolved within 24 h" share counted in the tenant's working hours: each alert resolved in
 * the range, from its creation to its resolution, on the tenant's calendar (O(1) per alert).
 */
create function public.alert_analytics_in_working_time(p_tenant text, p_from date, p_to date, p_tz text default 'UTC')
returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  v_result jsonb := public.alert_analytics(p_tenant, p_from, p_to, p_tz);  -- checks the range, zone and caller
  v_cal    public.business_calendars := public.calendar_for(p_tenant);
  v_start  timestamptz := p_from::timestamp at time zone p_tz;
  v_end    timestamptz := (p_to + 1)::timestamp at time zone p_tz;
  v_scope  text;
begin
  v_scope := case
    when (select public.sees_all_tenants()) then '*'
    when p_tenant = (select public.current_tenant()) and (select public.sees_whole_tenant()) then '*'
    when p_tenant = (select public.current_tenant()) and (select public.current_app_role()) = 'agent'
      then (select auth.jwt()) ->> 'sub'
  end;
  if v_scope is null then  -- a caller who sees no figures sees none in working time either
    return v_result || jsonb_build_object('clock', 'business');
  end if;
  with resolved as (
    select a.type::text as type, coalesce(l.owner_id, '') as owner_key,
           (public.working_seconds_between(v_cal, a.created_at, a.resolved_at) / 3600)::float8 as hours
    from public.max_alerts a
    left join public.leads l on l.tenant_id = a.tenant_id and l.lead_id = a.lead_id
    where a.tenant_id = p_tenant and a.resolved_at >= v_start and a.resolved_at < v_end
      and (v_scope = '*' or coalesce(l.owner_id, '') = v_scope)
  ),
  figures as (
    select g.kind, g.key, count(*) as count,
           round(percentile_cont(0.5) within group (order by g.hours)::numeric, 2) as median_hours,
           round(percentile_cont(0.9) within group (order by g.hours)::numeric, 2) as p90_hours
    from (select 't' as kind, r.type as key, r.hours from resolved r
          union all
          select 'o', r.owner_key, r.hours from resolved r) g
    group by g.kind, g.key
  )
  select v_result || jsonb_build_object(
    'clock', 'business',
    'resolved_within_24h', (select jsonb_build_object(
                              'resolved', count(*), 'within_24h', count(*) filter (where r.hours <= 24),
                              'share', round((count(*) filter (where r.hours <= 24))::numeric / nullif(count(*), 0), 4))
                            from resolved r),
    'time_to_resolve', jsonb_build_object(
      'by_type', coalesce((select jsonb_agg(jsonb_build_object('type', f.key, 'count', f.count,
                                                               'median_hours', f.median_hours, 'p90_hours', f.p90_hours)
                                            order by f.key)
                           from figures f where f.kind = 't'), '[]'),
      'by_owner', coalesce((select jsonb_agg(jsonb_build_object('owner_id', nullif(f.key, ''), 'count', f.count,
                                                                'median_hours', f.median_hours, 'p90_hours', f.p90_hours)
                                             order by nullif(f.key, '') nulls last)
                            from figures f where f.kind = 'o'), '[]')))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.alert_analytics_in_working_time(text, date, date, text) to authenticated, service_role;
