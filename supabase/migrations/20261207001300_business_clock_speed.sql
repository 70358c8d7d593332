-- The business clock's arithmetic in closed form: each calendar is laid out once (lay_out_calendar:
-- the working days of the week, the working minutes up to each range's closing, the holidays that
-- fall on a working day with their ranks), so that next_opening, add_working_days, add_working_time
-- and working_seconds_between are a few array lookups instead of day-by-day loops. Same results;
-- the old signatures (which read day_minutes and holidays) are replaced. raise_due_alerts computes
-- a judged rule's escalation step on the business clock once instead of in each expression reading it.

alter table public.business_calendars
  add column working_weekdays integer[],
  add column days_through     integer[],
  add column worked_by_close  integer[],
  add column closed_days      date[],
  add column closed_day_ranks integer[],
  add column closed_minutes   integer[];

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

update public.business_calendars c
set (working_weekdays, days_through, worked_by_close, closed_days, closed_day_ranks, closed_minutes) =
    (select l.working_weekdays, l.days_through, l.worked_by_close, l.closed_days, l.closed_day_ranks, l.closed_minutes
     from public.lay_out_calendar(c.opens, c.closes, c.day_minutes, c.holidays) l);

alter table public.business_calendars
  alter column working_weekdays set not null,
  alter column days_through     set not null,
  alter column worked_by_close  set not null,
  alter column closed_days      set not null,
  alter column closed_day_ranks set not null,
  alter column closed_minutes   set not null;

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

/**
 * When a span started at `p_at` ends on a rule's clock: elapsed time on the calendar clock; on the
 * business clock, working days for a whole number of days (`3d`, and `24h` too), else working time.
 */
create or replace function public.clock_add(p_cal public.business_calendars, p_business boolean, p_at timestamptz, p_span interval)
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

/** `next_opening` of a calendar row. */
create or replace function public.next_opening(p_cal public.business_calendars, p_at timestamptz) returns timestamptz
language sql immutable
as $$
  select public.next_opening(p_cal.time_zone, p_cal.opens, p_cal.closes, p_cal.working_weekdays, p_cal.days_through,
                             p_cal.closed_days, p_cal.closed_day_ranks, p_at)
$$;
grant execute on function public.next_opening(public.business_calendars, timestamptz) to authenticated, service_role;

/** `add_working_time` of a calendar row. */
create or replace function public.add_working_time(p_cal public.business_calendars, p_at timestamptz, p_span interval) returns timestamptz
language sql immutable
as $$
  select public.add_working_time(p_cal.time_zone, p_cal.opens, p_cal.closes, p_cal.worked_by_close,
                                 p_cal.working_weekdays, p_cal.days_through, p_cal.closed_days,
                                 p_cal.closed_day_ranks, p_cal.closed_minutes, p_at, p_span)
$$;
grant execute on function public.add_working_time(public.business_calendars, timestamptz, interval)
  to authenticated, service_role;

/** `add_working_days` of a calendar row. */
create or replace function public.add_working_days(p_cal public.business_calendars, p_at timestamptz, p_days integer) returns timestamptz
language sql immutable
as $$
  select public.add_working_days(p_cal.time_zone, p_cal.opens, p_cal.closes, p_cal.working_weekdays,
                                 p_cal.days_through, p_cal.closed_days, p_cal.closed_day_ranks, p_at, p_days)
$$;
grant execute on function public.add_working_days(public.business_calendars, timestamptz, integer) to authenticated, service_role;

/** `working_seconds_between` of a calendar row. */
create or replace function public.working_seconds_between(p_cal public.business_calendars, p_from timestamptz, p_to timestamptz)
returns numeric
language sql immutable
as $$
  select public.working_seconds_between(p_cal.time_zone, p_cal.opens, p_cal.closes, p_cal.worked_by_close,
                                        p_cal.closed_days, p_cal.closed_minutes, p_from, p_to)
$$;
grant execute on function public.working_seconds_between(public.business_calendars, timestamptz, timestamptz)
  to authenticated, service_role;

/**
 * A calendar read from the API's body `{timeZone, week: {mon: [["09:00", "18:00"]], ...}, holidays}`,
 * validated (LW422 naming the field: an unknown zone, a time that is not HH:MM, a range that does
 * not end after it starts or overlaps another, an empty week, a holiday that is not a date), with
 * its ranges laid out for the arithmetic. Days left out have no working hours.
 */
create or replace function public.parse_calendar(p_tenant text, p_body jsonb) returns public.business_calendars
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
create or replace function public.set_calendar(p_tenant text, p_calendar jsonb) returns jsonb
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

/**
 * Raise, escalate and supersede the time-based alerts of every lead that fell due by `p_now`
 * (one tenant, or all of them), then move each lead's due times on to the next step of its
 * ladder, on each rule's clock. One statement: concurrent sweeps wait on the same state rows, re-check them, and find
 * nothing left to do; the unique index on active alerts is the last word on duplicates.
 */
create or replace function public.raise_due_alerts(p_tenant text default null, p_now timestamptz default now())
returns jsonb
language plpgsql
set search_path = ''
set work_mem = '16MB'                        -- sized for a 1 GB instance (README, "Performance")
set plan_cache_mode = force_custom_plan      -- planned with the join methods each call allows
as $$
declare
  v_result jsonb;
begin
  for v_attempt in 1..3 loop
    begin
      with due as (
        select s.tenant_id, s.lead_id, s.no_contact_due_at, s.no_reply_due_at, s.stale_due_at, s.high_value_due_at,
               coalesce(s.last_activity_at, s.entered_at) as silent_since, s.last_outbound_at
        from public.lead_state s
        where s.next_due_at <= p_now and (p_tenant is null or s.tenant_id = p_tenant)
        for update
      ),
      -- The rules in force for each tenant with due leads, their message and action rendered once.
      rules as (
        select distinct on (t.tenant_id, r.type)
               t.tenant_id, r.type, r.enabled, r.threshold, r.severity, r.escalate_after, r.escalated_severity,
               r.supersedes, r.clock = 'business' as business,
               case when r.clock = 'business' then public.calendar_for(t.tenant_id) end as cal,
               coalesce(r.messages ->> r.locale, r.messages ->> 'fr') as message,
               jsonb_build_object('label', coalesce(r.action -> 'label' ->> r.locale, r.action -> 'label' ->> 'fr'),
                                  'action', r.action ->> 'action',
                                  'params', coalesce(r.action -> 'params', '{}'::jsonb)) as action
        from (select distinct d.tenant_id from due d) t
        join public.alert_rules r on r.tenant_id in (t.tenant_id, '*')
        order by t.tenant_id, r.type, r.tenant_id = '*'
      ),
      -- Each rule whose due time has come, with the moment its condition began to hold, and the
      -- severity its ladder gives today and when its next step falls due (null: no further step).
      judged as (
        select d.tenant_id, d.lead_id, c.type, c.since, r.supersedes,
          case
            when r.enabled is not true or c.since is null then null
            when r.business then case when p_now >= k.escalate_at then r.escalated_severity else r.severity end
            when p_now - c.since >= r.escalate_after then r.escalated_severity
            when p_now - c.since >= r.threshold then r.severity
          end::public.severity as severity,
          case
            when r.enabled is not true or c.since is null then null
            when r.business then case when p_now < k.escalate_at then k.escalate_at end
            when p_now - c.since < r.threshold then c.since + r.threshold
            when p_now - c.since < r.escalate_after then c.since + r.escalate_after
          end as next_due_at
        from due d
        cross join lateral (values
          ('NoContact7d'::public.alert_type, d.no_contact_due_at, d.silent_since),
          ('NoReply3d',                      d.no_reply_due_at,   d.last_outbound_at),
          ('StaleLead30d',                   d.stale_due_at,      d.silent_since),
          ('HighValueRisk',                  d.high_value_due_at, d.silent_since)
        ) as c (type, due_at, since)
        left join rules r on r.tenant_id = d.tenant_id and r.type = c.type
        -- On the business clock, the stored due time that came is the ladder's step on that clock
        -- (recomputed whenever the rule or the calendar changes): the threshold has passed, and only
        -- the escalation step is computed here, in working time, once a judged rule: a row of a
        -- VALUES scan, which the expressions above read (a one-row subquery or VALUES would be folded
        -- into each of them, and computed each time; the second row, dropped, keeps it a scan).
        cross join lateral (values (true, case when r.business
                                               then public.clock_add(r.cal, true, c.since, r.escalate_after) end),
                                   (false, null)) as k (kept, escalate_at)
        where c.due_at <= p_now and k.kept
      ),
      raised as (
        select j.tenant_id, j.lead_id, j.type, j.since, j.severity, j.supersedes
        from judged j
        where j.severity is not null
          and not exists (select from judged s
                          where s.supersedes = j.type and s.severity is not null
                            and s.tenant_id = j.tenant_id and s.lead_id = j.lead_id)
      ),
      -- Each raised rule with the lead's active alert of its type, if it has one: one lookup.
      matched as (
        select r.tenant_id, r.lead_id, r.type, r.since, r.severity, a.id as alert_id, a.severity_rank
        from raised r
        left join public.max_alerts a
          on a.tenant_id = r.tenant_id and a.lead_id = r.lead_id and a.type = r.type and a.resolved_at is null
             and (p_tenant is null or a.tenant_id = p_tenant)  -- a tenant's sweep reads its own alerts
      ),
      -- A rule raised on a lead with no active alert of its type creates one...
      created as (
        insert into public.max_alerts (tenant_id, lead_id, type, severity, message, suggested_action, cycle_started_at)
        select m.tenant_id, m.lead_id, m.type, m.severity,
               replace(u.message, '{days}', floor(extract(epoch from p_now - m.since) / 86400)::integer::text),
               jsonb_set(u.action, '{params,leadId}', to_jsonb(m.lead_id)),
               m.since
        from matched m
        join rules u on u.tenant_id = m.tenant_id and u.type = m.type
        where m.alert_id is null
        returning type
      ),
      -- ...and on a lead that has one, raises its severity in place (never lowers it).
      escalated as (
        update public.max_alerts a
        set severity = m.severity, escalated_at = now(),
            message = replace(u.message, '{days}', floor(extract(epoch from p_now - m.since) / 86400)::integer::text)
        from matched m
        join rules u on u.tenant_id = m.tenant_id and u.type = m.type
        where m.alert_id is not null
          and (case m.severity when 'high' then 1 when 'med' then 2 else 3 end) < m.severity_rank
          and a.tenant_id = m.tenant_id and a.id = m.alert_id and a.resolved_at is null
          and (p_tenant is null or a.tenant_id = p_tenant)
          and (case m.severity when 'high' then 1 when 'med' then 2 else 3 end) < a.severity_rank
        returning a.id
      ),
      superseded as (
        update public.max_alerts a
        set resolved_at = now(), resolved_by = 'system', resolution = 'superseded'
        from raised r
        where r.supersedes is not null
          and a.tenant_id = r.tenant_id and a.lead_id = r.lead_id and a.type = r.supersedes and a.resolved_at is null
          and (p_tenant is null or a.tenant_id = p_tenant)
        returning a.id
      ),
      moved as (
        update public.lead_state s set
          no_contact_due_at = case when m.no_contact then m.no_contact_due_at else s.no_contact_due_at end,
          no_reply_due_at   = case when m.no_reply   then m.no_reply_due_at   else s.no_reply_due_at end,
          stale_due_at      = case when m.stale      then m.stale_due_at      else s.stale_due_at end,
          high_value_due_at = case when m.high_value then m.high_value_due_at else s.high_value_due_at end
        from (
          select j.tenant_id, j.lead_id,
                 bool_or(j.type = 'NoContact7d')   as no_contact, max(j.next_due_at) filter (where j.type = 'NoContact7d')   as no_contact_due_at,
                 bool_or(j.type = 'NoReply3d')     as no_reply,   max(j.next_due_at) filter (where j.type = 'NoReply3d')     as no_reply_due_at,
                 bool_or(j.type = 'StaleLead30d')  as stale,      max(j.next_due_at) filter (where j.type = 'StaleLead30d')  as stale_due_at,
                 bool_or(j.type = 'HighValueRisk') as high_value, max(j.next_due_at) filter (where j.type = 'HighValueRisk') as high_value_due_at
          from judged j
          group by j.tenant_id, j.lead_id
        ) m
        where s.tenant_id = m.tenant_id and s.lead_id = m.lead_id
          and s.next_due_at <= p_now and (p_tenant is null or s.tenant_id = p_tenant)  -- the due rows, by index
        returning 1
      )
      select jsonb_build_object(
        'created', (select jsonb_build_object(
                      'NoContact7d',   count(*) filter (where c.type = 'NoContact7d'),
                      'NoReply3d',     count(*) filter (where c.type = 'NoReply3d'),
                      'StaleLead30d',  count(*) filter (where c.type = 'StaleLead30d'),
                      'HighValueRisk', count(*) filter (where c.type = 'HighValueRisk'))
                    from created c),
        'escalated', (select count(*) from escalated),
        'resolved', (select count(*) from superseded),
        'leads_checked', (select count(*) from moved))
      into v_result;
      return v_result;
    exception when unique_violation then
      -- Another path opened an alert of the same type for a due lead while this statement ran
      -- (its snapshot could not see it): judge again, with a snapshot that does.
      if v_attempt = 3 then
        raise;
      end if;
    end;
  end loop;
  return null;  -- not reached: the last attempt returns or raises
end
$$;
grant execute on function public.raise_due_alerts(text, timestamptz) to service_role;

drop function public.end_of_working_span(text, integer[], integer[], date[], date, numeric, numeric);
drop function public.next_opening(text, integer[], integer[], integer[], date[], timestamptz);
drop function public.add_working_time(text, integer[], integer[], integer[], date[], timestamptz, interval);
drop function public.add_working_days(text, integer[], integer[], integer[], date[], timestamptz, integer);
drop function public.working_seconds_between(text, integer[], integer[], integer[], date[], timestamptz, timestamptz);
drop function public.working_seconds_in_day(integer[], integer[], date[], date, numeric, numeric);
