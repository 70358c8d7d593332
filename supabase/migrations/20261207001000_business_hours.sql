-- Business hours: a working calendar per tenant (a week of local opening ranges in an IANA zone,
-- and holidays), and a clock per rule. On the `business` clock a rule's threshold, escalation step
-- and overdue delay count working time only: `Nd` is N working days (the same local clock time N
-- working days later), `Nh`/`Nm` are working hours and minutes. Working time is read on the
-- calendar's local clock, so openings follow it across daylight-saving changes. The arithmetic is
-- whole weeks plus a remainder (O(1) per lead, a step per holiday in the way), and due times stay
-- stored in lead_state, so the sweep reads only what is due whatever the clock.

-- Tables ------------------------------------------------------------------------------------------

alter table public.alert_rules
  add column clock text not null default 'calendar',  -- 'calendar': elapsed time; 'business': the tenant's working time
  add constraint alert_rules_clock_known check (clock in ('calendar', 'business'));

create table public.business_calendars (
  tenant_id   text not null,                  -- '*' holds the default; a tenant's own row replaces it
  time_zone   text not null,                  -- IANA zone of the week's clock times and of the holidays
  week        jsonb not null,                 -- {"mon": [["09:00", "18:00"]], ..., "sun": []} as the API shows it
  holidays    date[] not null default '{}',   -- whole local dates without working time, ascending, each once
  opens       integer[] not null,             -- the week's working ranges as minutes of the week (Monday 00:00
  closes      integer[] not null,             -- is 0), ascending, each ending (exclusive) by its day's 24:00
  day_minutes integer[] not null,             -- working minutes of each day of the week, Monday first
  updated_at  timestamptz not null default now(),
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

-- The arithmetic takes a calendar's fields one by one: reading a field of a row passed to PL/pgSQL
-- expands the whole row first, which costs more than the arithmetic itself. The functions taking a
-- calendar row (`clock_add` and those below it) are SQL one-liners that pass its fields on.

/**
 * Seconds of working time a calendar gives to the part [p_from, p_to) (seconds since local
 * midnight) of one local date: none on a holiday.
 */
create function public.working_seconds_in_day(
  p_opens integer[], p_closes integer[], p_holidays date[],  -- what a day needs of a calendar
  p_day date, p_from numeric default 0, p_to numeric default 86400)
returns numeric
language plpgsql immutable
set search_path = ''
as $$
declare
  v_base integer := (extract(isodow from p_day)::integer - 1) * 1440;
  v_sum  numeric := 0;
begin
  if p_day = any (p_holidays) then
    return 0;
  end if;
  for i in 1 .. cardinality(p_opens) loop
    if p_opens[i] >= v_base and p_opens[i] < v_base + 1440 then
      v_sum := v_sum + greatest(0, least((p_closes[i] - v_base) * 60, p_to) - greatest((p_opens[i] - v_base) * 60, p_from));
    end if;
  end loop;
  return v_sum;
end
$$;
grant execute on function public.working_seconds_in_day(integer[], integer[], date[], date, numeric, numeric)
  to authenticated, service_role;


/**
 * The instant at which `p_seconds` (> 0) of working time counted from `p_from` (seconds since local
 * midnight) run out on a local date; null when the day has not that much left. The earliest such
 * instant: a span that uses a range to its end ends at its closing.
 */
create function public.end_of_working_span(
  p_zone text, p_opens integer[], p_closes integer[], p_holidays date[],  -- what a day needs of a calendar
  p_day date, p_from numeric, p_seconds numeric)
returns timestamptz
language plpgsql immutable
set search_path = ''
as $$
declare
  v_base  integer := (extract(isodow from p_day)::integer - 1) * 1440;
  v_left  numeric := p_seconds;
  v_start numeric;
  v_avail numeric;
begin
  if p_day = any (p_holidays) then
    return null;
  end if;
  for i in 1 .. cardinality(p_opens) loop
    if p_opens[i] >= v_base and p_opens[i] < v_base + 1440 then
      v_start := greatest((p_opens[i] - v_base) * 60, p_from);
      v_avail := (p_closes[i] - v_base) * 60 - v_start;
      if v_avail > 0 then
        if v_left <= v_avail then
          return (p_day + (v_start + v_left) * interval '1 second') at time zone p_zone;
        end if;
        v_left := v_left - v_avail;
      end if;
    end if;
  end loop;
  return null;
end
$$;
grant execute on function public.end_of_working_span(text, integer[], integer[], date[], date, numeric, numeric)
  to authenticated, service_role;


/**
 * The first working instant at or after `p_at`: `p_at` itself within working hours, else the next
 * opening of the calendar (on its local clock, holidays skipped: at most a week away, plus a day
 * per holiday in the way).
 */
create function public.next_opening(
  p_zone text, p_opens integer[], p_closes integer[], p_day_minutes integer[], p_holidays date[],  -- a calendar
  p_at timestamptz) returns timestamptz
language plpgsql immutable
set search_path = ''
as $$
declare
  v_local timestamp := p_at at time zone p_zone;
  v_day   date := v_local::date;
  v_secs  numeric := extract(epoch from v_local - v_local::date);
  v_base  integer := (extract(isodow from v_local)::integer - 1) * 1440;
begin
  if p_at is null or not isfinite(p_at) then
    return p_at;
  end if;
  if not v_day = any (p_holidays) then
    for i in 1 .. cardinality(p_opens) loop  -- ranges in order: the first one not closed yet
      if p_opens[i] >= v_base and p_opens[i] < v_base + 1440 and v_secs < (p_closes[i] - v_base) * 60 then
        if v_secs >= (p_opens[i] - v_base) * 60 then
          return p_at;
        end if;
        return (v_day + (p_opens[i] - v_base) * interval '1 minute') at time zone p_zone;
      end if;
    end loop;
  end if;
  loop
    v_day := v_day + 1;
    v_base := (extract(isodow from v_day)::integer - 1) * 1440;
    continue when p_day_minutes[v_base / 1440 + 1] = 0 or v_day = any (p_holidays);
    for i in 1 .. cardinality(p_opens) loop
      if p_opens[i] >= v_base then
        return (v_day + (p_opens[i] - v_base) * interval '1 minute') at time zone p_zone;
      end if;
    end loop;
  end loop;
  return null;  -- not reached: the loop above returns
end
$$;
grant execute on function public.next_opening(text, integer[], integer[], integer[], date[], timestamptz)
  to authenticated, service_role;


/**
 * `p_at` plus `p_span` of working time: the earliest instant by which that much working time has
 * passed since `p_at`. The rest of the first day, then whole weeks at once, then at most a week day
 * by day; each holiday met gives back its day's working time (one more step per holiday).
 */
create function public.add_working_time(
  p_zone text, p_opens integer[], p_closes integer[], p_day_minutes integer[], p_holidays date[],  -- a calendar
  p_at timestamptz, p_span interval)
returns timestamptz
language plpgsql immutable
set search_path = ''
as $$
declare
  v_local  timestamp := p_at at time zone p_zone;
  v_day    date := v_local::date;
  v_secs   numeric := extract(epoch from v_local - v_local::date);
  v_left   numeric := extract(epoch from p_span);
  v_week   numeric := 0;
  v_weeks  integer;
  v_end    date;
  v_lost   numeric;
  v_today  numeric;
  v_dow    integer;
  v_holidays boolean := cardinality(p_holidays) > 0;
  v_minutes integer;
  v_holiday date;
begin
  if p_at is null or p_span is null or not isfinite(p_at) then
    return p_at + p_span;
  end if;
  if v_left <= 0 then
    return p_at;
  end if;
  foreach v_minutes in array p_day_minutes loop
    v_week := v_week + v_minutes * 60;
  end loop;
  -- The rest of the first day.
  v_today := public.working_seconds_in_day(p_opens, p_closes, p_holidays, v_day, v_secs);
  if v_left <= v_today then
    return public.end_of_working_span(p_zone, p_opens, p_closes, p_holidays, v_day, v_secs, v_left);
  end if;
  v_left := v_left - v_today;
  v_day := v_day + 1;
  v_dow := extract(isodow from v_day)::integer;  -- v_day's, kept in step
  loop
    -- Whole weeks, leaving between a second and a week of working time; the holidays among them
    -- give their days' time back.
    v_weeks := ceil(v_left / v_week)::integer - 1;
    v_end := v_day + 7 * v_weeks;
    v_lost := 0;
    if v_weeks > 0 and v_holidays then
      foreach v_holiday in array p_holidays loop
        if v_holiday >= v_day and v_holiday < v_end then
          v_lost := v_lost + p_day_minutes[extract(isodow from v_holiday)::integer] * 60;
        end if;
      end loop;
    end if;
    v_left := v_left - v_weeks * v_week + v_lost;
    v_day := v_end;  -- whole weeks: the day of the week stays
    continue when v_lost > 0;
    -- Then day by day, at most a week (more only if holidays are in the way: the loop goes on).
    for i in 1 .. 7 loop
      v_today := case when v_holidays and v_day = any (p_holidays) then 0 else p_day_minutes[v_dow] * 60 end;
      if v_left <= v_today then
        return public.end_of_working_span(p_zone, p_opens, p_closes, p_holidays, v_day, 0, v_left);
      end if;
      v_left := v_left - v_today;
      v_day := v_day + 1;
      v_dow := v_dow % 7 + 1;
    end loop;
  end loop;
  return null;  -- not reached: the loop above returns
end
$$;
grant execute on function public.add_working_time(text, integer[], integer[], integer[], date[], timestamptz, interval)
  to authenticated, service_role;


/**
 * `p_at` plus `p_days` working days: the same local clock time that many working days later. An
 * instant outside working hours counts from the next opening; a result outside working hours (a
 * shorter day, a clock change) moves to the next opening. Whole weeks at once, then at most a week
 * day by day, one more step per holiday in the way.
 */
create function public.add_working_days(
  p_zone text, p_opens integer[], p_closes integer[], p_day_minutes integer[], p_holidays date[],  -- a calendar
  p_at timestamptz, p_days integer)
returns timestamptz
language plpgsql immutable
set search_path = ''
as $$
declare
  v_start    timestamptz := public.next_opening(p_zone, p_opens, p_closes, p_day_minutes, p_holidays, p_at);
  v_local    timestamp := v_start at time zone p_zone;
  v_time     interval := v_local - v_local::date;
  v_day      date := v_local::date + 1;
  v_dow      integer := extract(isodow from v_local::date + 1)::integer;  -- v_day's, kept in step
  v_holidays boolean := cardinality(p_holidays) > 0;
  v_left     integer := p_days;
  v_per_week integer := 0;
  v_weeks    integer;
  v_end      date;
  v_lost     integer;
  v_minutes  integer;
  v_holiday  date;
begin
  if p_at is null or p_days is null or not isfinite(p_at) then
    return p_at + make_interval(days => p_days);
  end if;
  if p_days <= 0 then
    return p_at;
  end if;
  foreach v_minutes in array p_day_minutes loop
    v_per_week := v_per_week + (v_minutes > 0)::integer;
  end loop;
  loop
    -- Whole weeks, leaving between one and a week's working days; the holidays among them give
    -- their days back.
    v_weeks := (v_left - 1) / v_per_week;
    v_end := v_day + 7 * v_weeks;
    v_lost := 0;
    if v_weeks > 0 and v_holidays then
      foreach v_holiday in array p_holidays loop
        if v_holiday >= v_day and v_holiday < v_end and p_day_minutes[extract(isodow from v_holiday)::integer] > 0 then
          v_lost := v_lost + 1;
        end if;
      end loop;
    end if;
    v_left := v_left - v_weeks * v_per_week + v_lost;
    v_day := v_end;  -- whole weeks: the day of the week stays
    continue when v_lost > 0;
    -- Then day by day, at most a week (more only if holidays are in the way: the loop goes on).
    for i in 1 .. 7 loop
      if p_day_minutes[v_dow] > 0 and not (v_holidays and v_day = any (p_holidays)) then
        v_left := v_left - 1;
        if v_left = 0 then
          return public.next_opening(p_zone, p_opens, p_closes, p_day_minutes, p_holidays,
                                     (v_day + v_time) at time zone p_zone);
        end if;
      end if;
      v_day := v_day + 1;
      v_dow := v_dow % 7 + 1;
    end loop;
  end loop;
  return null;  -- not reached: the loop above returns
end
$$;
grant execute on function public.add_working_days(text, integer[], integer[], integer[], date[], timestamptz, integer)
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
    when extract(epoch from p_span) % 86400 = 0
      then public.add_working_days(p_cal.time_zone, p_cal.opens, p_cal.closes, p_cal.day_minutes, p_cal.holidays,
                       p_at, (extract(epoch from p_span) / 86400)::integer)
    else public.add_working_time(p_cal.time_zone, p_cal.opens, p_cal.closes, p_cal.day_minutes, p_cal.holidays,
                       p_at, p_span)
  end
$$;
grant execute on function public.clock_add(public.business_calendars, boolean, timestamptz, interval)
  to authenticated, service_role;


/**
 * Seconds of working time between two instants (none when `p_to` is not after `p_from`): the ends
 * of the first and last days, whole weeks at once, at most six days one by one, less the holidays.
 */
create function public.working_seconds_between(
  p_zone text, p_opens integer[], p_closes integer[], p_day_minutes integer[], p_holidays date[],  -- a calendar
  p_from timestamptz, p_to timestamptz)
returns numeric
language plpgsql immutable
set search_path = ''
as $$
declare
  v_from    timestamp := p_from at time zone p_zone;
  v_to      timestamp := p_to at time zone p_zone;
  v_first   date := v_from::date;
  v_last    date := v_to::date;
  v_week    numeric := 0;
  v_total   numeric;
  v_day     date;
  v_minutes integer;
  v_holiday date;
begin
  if p_from is null or p_to is null then
    return null;
  end if;
  if v_to <= v_from then
    return 0;
  end if;
  if v_first = v_last then
    return public.working_seconds_in_day(p_opens, p_closes, p_holidays, v_first,
                                         extract(epoch from v_from - v_first), extract(epoch from v_to - v_last));
  end if;
  foreach v_minutes in array p_day_minutes loop
    v_week := v_week + v_minutes * 60;
  end loop;
  v_total := public.working_seconds_in_day(p_opens, p_closes, p_holidays, v_first,
                                           extract(epoch from v_from - v_first))
           + public.working_seconds_in_day(p_opens, p_closes, p_holidays, v_last, 0,
                                           extract(epoch from v_to - v_last))
           + ((v_last - v_first - 1) / 7) * v_week;
  v_day := v_first + 1 + ((v_last - v_first - 1) / 7) * 7;
  while v_day < v_last loop
    v_total := v_total + p_day_minutes[extract(isodow from v_day)::integer] * 60;
    v_day := v_day + 1;
  end loop;
  foreach v_holiday in array p_holidays loop
    if v_holiday > v_first and v_holiday < v_last then
      v_total := v_total - p_day_minutes[extract(isodow from v_holiday)::integer] * 60;
    end if;
  end loop;
  return v_total;
end
$$;
grant execute on function public.working_seconds_between(text, integer[], integer[], integer[], date[], timestamptz, timestamptz)
  to authenticated, service_role;

/** `next_opening` of a calendar row. */
create function public.next_opening(p_cal public.business_calendars, p_at timestamptz) returns timestamptz
language sql immutable
as $$
  select public.next_opening(p_cal.time_zone, p_cal.opens, p_cal.closes, p_cal.day_minutes, p_cal.holidays,
                       p_at)
$$;
grant execute on function public.next_opening(public.business_calendars, timestamptz) to authenticated, service_role;

/** `add_working_time` of a calendar row. */
create function public.add_working_time(p_cal public.business_calendars, p_at timestamptz, p_span interval) returns timestamptz
language sql immutable
as $$
  select public.add_working_time(p_cal.time_zone, p_cal.opens, p_cal.closes, p_cal.day_minutes, p_cal.holidays,
                       p_at, p_span)
$$;
grant execute on function public.add_working_time(public.business_calendars, timestamptz, interval)
  to authenticated, service_role;

/** `add_working_days` of a calendar row. */
create function public.add_working_days(p_cal public.business_calendars, p_at timestamptz, p_days integer) returns timestamptz
language sql immutable
as $$
  select public.add_working_days(p_cal.time_zone, p_cal.opens, p_cal.closes, p_cal.day_minutes, p_cal.holidays,
                       p_at, p_days)
$$;
grant execute on function public.add_working_days(public.business_calendars, timestamptz, integer) to authenticated, service_role;

/** `working_seconds_between` of a calendar row. */
create function public.working_seconds_between(p_cal public.business_calendars, p_from timestamptz, p_to timestamptz)
returns numeric
language sql immutable
as $$
  select public.working_seconds_between(p_cal.time_zone, p_cal.opens, p_cal.closes, p_cal.day_minutes, p_cal.holidays,
                       p_from, p_to)
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
    closes = excluded.closes, day_minutes = excluded.day_minutes, updated_at = excluded.updated_at;
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

insert into public.business_calendars (tenant_id, time_zone, week, opens, closes, day_minutes)
select '*', c.time_zone, c.week, c.opens, c.closes, c.day_minutes
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

-- Functions redefined: their due times, ladders and delays on each rule's clock -------------------
--
-- Each as it stands in supabase/schemas/ before this change, changed only where a due time, a
-- ladder step or a delay is computed (`clock_add` on the rule's clock, which is plain addition on
-- the calendar clock): log_activity, ingest_activities, upsert_leads, refresh_lead_state,
-- recompute_due_times, raise_due_alerts, wake_snoozed_alerts and mark_overdue_alerts; rule_json and
-- set_rule show and take the clock.

/**
 * Log one activity of a lead and apply the rules it triggers.
 *
 * Idempotent on (tenant, channel, external id): a replay returns the stored activity with
 * `duplicate: true` and changes nothing. Judged by `occurred_at`: an event older than what we
 * already know never moves "last activity" back, and an inbound that occurred before our last
 * outbound does not answer it. A send that failed is stored but is not contact. Users log only
 * in their tenant, and agents only for the leads they own.
 *
 * The ingest-time rules are judged here, reading only the lead's most recent activities:
 * - HotLead24h: the lead's last `min_count` inbound all occurred within the rule's window (24 h)
 *   before now, after our last outbound. Answered by an outbound that occurred after the first of them.
 *   Read only when an earlier inbound may be in the window: the lead's `last_inbound_at` is never
 *   older than its newest stored inbound (ingest moves it forward, `refresh_lead_state` sets it to
 *   the newest), so when it is not after the cutoff this inbound is the only one there.
 * - PreferredChannel: `min_count` of the lead's last 5 inbound came on one channel (else: the
 *   directory's `preferred_channel`, which the lead's state carries), and neither of our last 2
 *   outbound used it. Answered by an
 *   outbound on that channel that occurred after the first of those two.
 */
create or replace function public.log_activity(
  p_tenant          text,
  p_lead_id         text,
  p_channel         text,
  p_direction       text,
  p_status          text default 'sent',
  p_message_snippet text default null,
  p_meta            jsonb default null,
  p_occurred_at     timestamptz default null,
  p_external_id     text default null
) returns jsonb
language plpgsql
security definer  -- moves lead_state and alerts, which users cannot write themselves
set search_path = ''
-- Every statement here reads one lead by key: one plan each, made once per connection, never
-- replanned per call (the rules' statement would otherwise cost more to plan than to run).
set plan_cache_mode = force_generic_plan
as $$
declare
  v_at       timestamptz := coalesce(p_occurred_at, now());
  v_activity public.lead_activities;
  v_old      public.lead_state;
  v_new      public.lead_state;
  v_rules    record;
  v_types    text[] := '{}'::text[];
  v_open     text[];            -- the lead's active alert types
  v_created  text[] := '{}'::text[];
  v_resolved jsonb := '[]'::jsonb;
  v_cutoff    timestamptz;      -- HotLead24h counts the inbound after this (the window, our last outbound)
  v_hot       boolean;          -- may this activity raise HotLead24h?
  v_preferred boolean;          -- ... PreferredChannel?
  v_count     integer;          -- the burst: how many inbound, since when
  v_since     timestamptz;
  v_channel   text;             -- the lead's channel: most of their last 5 inbound, else the directory's
  v_ours      text[];           -- the channels of our last 2 outbound, since when
  v_streak    timestamptz;
begin
  if not public.is_trusted_caller() then  -- a user: in their tenant, and (agents) for their own leads
    perform public.assert_acts_in(p_tenant);
    if not public.can_see_lead(p_tenant, p_lead_id) then
      perform public.raise_error('LW404', 'lead not found', 'leadId');
    end if;
  end if;
  if v_at > now() + interval '5 minutes' then
    perform public.raise_error('LW422', 'occurredAt is more than 5 minutes in the future', 'occurredAt');
  end if;

  insert into public.lead_activities
    (tenant_id, lead_id, channel, direction, status, message_snippet, meta, occurred_at, external_id)
  values
    (p_tenant, p_lead_id, p_channel, p_direction, coalesce(p_status, 'sent'), left(p_message_snippet, 100),
     p_meta, v_at, p_external_id)
  on conflict (tenant_id, channel, external_id) where external_id is not null do nothing
  returning * into v_activity;

  if v_activity.id is null then  -- a replay: answer with what was stored the first time
    select * into v_activity from public.lead_activities a
    where a.tenant_id = p_tenant and a.channel = p_channel and a.external_id = p_external_id;
    return jsonb_build_object('activity', public.activity_json(v_activity),
                              'alerts', jsonb_build_object('created', '[]'::jsonb, 'resolved', '[]'::jsonb),
                              'duplicate', true);
  end if;

  if public.counts_as_contact(v_activity.status) then
    -- The rules' settings and clocks (with the calendar when a rule counts working time), one row.
    select * into v_rules from public.rules_at_ingest(p_tenant) cross join public.rule_clocks(p_tenant);

    -- One writer per lead at a time: the state row is the lock.
    select * into v_old from public.lead_state s
    where s.tenant_id = p_tenant and s.lead_id = p_lead_id for update;
    if not found then
      insert into public.lead_state (tenant_id, lead_id, entered_at) values (p_tenant, p_lead_id, v_at)
      on conflict do nothing;
      select * into v_old from public.lead_state s
      where s.tenant_id = p_tenant and s.lead_id = p_lead_id for update;
    end if;

    v_new := v_old;
    v_new.last_activity_at := greatest(v_old.last_activity_at, v_at);
    if p_direction = 'in' then
      v_new.last_inbound_at := greatest(v_old.last_inbound_at, v_at);
    else
      v_new.last_outbound_at := greatest(v_old.last_outbound_at, v_at);
    end if;

    -- Any later activity breaks the silence: NoContact7d, StaleLead30d and HighValueRisk start over.
    if v_new.last_activity_at is distinct from v_old.last_activity_at then
      v_types := v_types || array['NoContact7d', 'StaleLead30d', 'HighValueRisk'];
      v_new.no_contact_due_at := public.clock_add(v_rules.calendar, v_rules.business_no_contact,
                                                  v_new.last_activity_at, v_rules.no_contact);
      v_new.stale_due_at := public.clock_add(v_rules.calendar, v_rules.business_stale,
                                             v_new.last_activity_at, v_rules.stale);
      v_new.high_value_due_at := case when v_new.high_value
                                      then public.clock_add(v_rules.calendar, v_rules.business_high_value,
                                                            v_new.last_activity_at, v_rules.high_value) end;
    end if;

    -- Anything after our last outbound answers NoReply3d: a reply ends it, a new message restarts it.
    if v_at > coalesce(v_old.last_outbound_at, '-infinity') then
      v_types := v_types || array['NoReply3d'];
      v_new.no_reply_due_at := case
        when v_new.last_outbound_at > coalesce(v_new.last_inbound_at, '-infinity')
        then public.clock_add(v_rules.calendar, v_rules.business_no_reply, v_new.last_outbound_at, v_rules.no_reply)
      end;
    end if;

    update public.lead_state s set
      last_activity_at  = v_new.last_activity_at,
      last_inbound_at   = v_new.last_inbound_at,
      last_outbound_at  = v_new.last_outbound_at,
      no_contact_due_at = v_new.no_contact_due_at,
      no_reply_due_at   = v_new.no_reply_due_at,
      stale_due_at      = v_new.stale_due_at,
      high_value_due_at = v_new.high_value_due_at
    where s.tenant_id = p_tenant and s.lead_id = p_lead_id;

    select coalesce(array_agg(a.type), '{}') into v_open
    from public.max_alerts a
    where a.tenant_id = p_tenant and a.lead_id = p_lead_id and a.resolved_at is null;

    -- Most activities find nothing to answer: look before writing (and firing the history trigger).
    -- An outbound answers HotLead24h, and PreferredChannel when it uses the lead's channel.
    if cardinality(v_open) > 0 and (cardinality(v_types) > 0 or p_direction = 'out') then
      with resolved as (
        update public.max_alerts a
        set resolved_at = now(), resolved_by = 'system', resolution = 'activity', resolved_by_activity = v_activity.id
        where a.tenant_id = p_tenant and a.lead_id = p_lead_id and a.resolved_at is null
          and (a.type = any (v_types)
               or (p_direction = 'out' and v_at > a.cycle_started_at
                   and (a.type = 'HotLead24h' or (a.type = 'PreferredChannel' and a.channel = p_channel))))
        returning a.type
      )
      select coalesce(jsonb_agg(r.type order by r.type), '[]') into v_resolved from resolved r;
      v_open := array(select unnest(v_open) except select jsonb_array_elements_text(v_resolved));
    end if;

    -- What the ingest-time rules need, read in one statement from the lead's newest activities (the
    -- index's order): the newest inbound (HotLead24h's burst, PreferredChannel's last 5) and our
    -- last 2 outbound. Only when a rule can fire: enabled, not already active, and (HotLead24h) an
    -- inbound within the window after our last outbound, (PreferredChannel) once we have written.
    v_cutoff := greatest(now() - v_rules.hot_window, coalesce(v_new.last_outbound_at, '-infinity'));
    v_hot := p_direction = 'in' and v_rules.hot_count is not null and not 'HotLead24h' = any (v_open)
             and v_at > v_cutoff and (v_rules.hot_count <= 1 or v_old.last_inbound_at > v_cutoff);
    v_preferred := v_rules.preferred_count is not null and not 'PreferredChannel' = any (v_open)
                   and v_new.last_outbound_at is not null;
    if v_hot or v_preferred then
      with inbound as (
        select a.channel, a.occurred_at, row_number() over (order by a.occurred_at desc, a.id desc) as k
        from public.lead_activities a
        where a.tenant_id = p_tenant and a.lead_id = p_lead_id
          and a.direction = 'in' and public.counts_as_contact(a.status)
        order by a.occurred_at desc, a.id desc
        limit greatest(5, v_rules.hot_count)
      ),
      outbound as (
        select a.channel, a.occurred_at
        from public.lead_activities a
        where a.tenant_id = p_tenant and a.lead_id = p_lead_id
          and a.direction = 'out' and public.counts_as_contact(a.status)
        order by a.occurred_at desc, a.id desc
        limit 2
      ),
      -- The channel at least `min_count` of the last 5 inbound came on (within the rule's window, if any).
      heard as (
        select i.channel
        from inbound i
        where i.k <= 5 and (v_rules.preferred_window is null or i.occurred_at > now() - v_rules.preferred_window)
        group by i.channel
        having count(*) >= v_rules.preferred_count
        order by count(*) desc, max(i.occurred_at) desc
        limit 1
      )
      select count(*) filter (where v_hot and i.k <= v_rules.hot_count and i.occurred_at > v_cutoff),
             min(i.occurred_at) filter (where v_hot and i.k <= v_rules.hot_count and i.occurred_at > v_cutoff),
             case when v_preferred then coalesce((select h.channel from heard h),
                                                 v_old.preferred_channel) end,
             case when v_preferred then (select array_agg(o.channel::text) from outbound o) end,
             case when v_preferred then (select min(o.occurred_at) from outbound o) end
      into v_count, v_since, v_channel, v_ours, v_streak
      from inbound i;

      if v_hot and v_count >= v_rules.hot_count then
        perform public.raise_ingest_alert(p_tenant, p_lead_id, 'HotLead24h', v_since, v_count);
        v_created := v_created || 'HotLead24h'::text;
      end if;
      if v_preferred and v_channel is not null and cardinality(v_ours) = 2 and not v_channel = any (v_ours) then
        perform public.raise_ingest_alert(p_tenant, p_lead_id, 'PreferredChannel', v_streak, p_channel => v_channel);
        v_created := v_created || 'PreferredChannel'::text;
      end if;
    end if;
  end if;

  return jsonb_build_object('activity', public.activity_json(v_activity),
                            'alerts', jsonb_build_object('created', to_jsonb(v_created), 'resolved', v_resolved),
                            'duplicate', false);
end
$$;

/**
 * Log activities of distinct leads (no two with the same lead, no two with the same channel and
 * external id) and apply the rules they trigger, exactly as `log_activity` describes; answer one
 * result per activity, keyed by its `ord`: the rules of `log_activity`, set-based. The core of
 * `log_activities`, which checks the caller and the input first; nobody calls it directly.
 *
 * 1. Store the activities (a replay of a stored external id is not stored again), lock the state
 *    rows of the leads they concern and read them (one writer per lead at a time); create those
 *    missing, then lock and read them too.
 * 2. Move each lead's state forward and judge, from the state read, the lead's active alerts and
 *    its newest activities (read only when an ingest-time rule can fire), what the activity
 *    answers and raises. One statement: a fresh snapshot taken once the leads are locked.
 * 3. Resolve (by the alerts' primary keys), then raise, only when there is something to resolve
 *    or raise (an alert write fires the history triggers even when it writes nothing).
 */
create or replace function public.ingest_activities(p_tenant text, p_items public.activity_in[])
returns jsonb
language plpgsql
set search_path = ''
-- Each statement reads a few leads by key: one plan, made once per connection, never replanned per call.
set plan_cache_mode = force_generic_plan
as $$
declare
  v_rows     public.lead_activities[];
  v_contacts bigint;                  -- how many of them count as contact
  v_state    public.lead_state[];     -- the state of their leads before them, locked
  v_verdicts public.ingest_verdict[];
  v_answered uuid[];                  -- the active alerts the activities answer, to resolve
  v_resolver jsonb;                   -- the activity answering them, by lead
  v_resolved jsonb;
  v_created  jsonb;
  v_results  jsonb;
begin
  with stored as (
    insert into public.lead_activities as a
      (tenant_id, lead_id, channel, direction, status, message_snippet, meta, occurred_at, external_id)
    select p_tenant, i.lead_id, i.channel, i.direction, coalesce(i.status, 'sent'), left(i.message_snippet, 100),
           i.meta, coalesce(i.occurred_at, now()), i.external_id
    from unnest(p_items) i
    order by i.ord
    on conflict (tenant_id, channel, external_id) where external_id is not null do nothing
    returning a.tenant_id, a.lead_id, a.status, a.occurred_at, a as activity
  ),
  -- The leads' state, locked in key order: its latest version (the lock waits for another writer).
  locked as (
    select s from public.lead_state s
    where s.tenant_id = p_tenant
      and s.lead_id in (select a.lead_id from stored a where public.counts_as_contact(a.status))
    order by s.lead_id
    for update
  ),
  entered as (  -- a lead first heard of now: its silence starts with this activity
    insert into public.lead_state (tenant_id, lead_id, entered_at)
    select a.tenant_id, a.lead_id, a.occurred_at from stored a
    where public.counts_as_contact(a.status) and a.lead_id not in (select (l.s).lead_id from locked l)
    on conflict do nothing
  )
  select array_agg(s.activity), count(*) filter (where public.counts_as_contact(s.status)),
         (select array_agg(l.s) from locked l)
  into v_rows, v_contacts, v_state
  from stored s;

  if coalesce(cardinality(v_state), 0) < v_contacts then
    -- Leads first heard of now (their rows, created above, were invisible to the lock): lock and
    -- read them all again.
    select array_agg(l.s) into v_state
    from (select s from public.lead_state s
          where s.tenant_id = p_tenant
            and s.lead_id in (select a.lead_id from unnest(v_rows) a where public.counts_as_contact(a.status))
          order by s.lead_id
          for update) l;
  end if;

  with rules as materialized (
    select r.no_contact as t_no_contact, r.no_reply as t_no_reply, r.stale as t_stale,
           r.high_value as t_high_value, r.hot_window, r.hot_count, r.preferred_window, r.preferred_count,
           k.business_no_contact as b_no_contact, k.business_no_reply as b_no_reply, k.business_stale as b_stale,
           k.business_high_value as b_high_value,
           k.calendar as cal
    from public.rules_at_ingest(p_tenant) r
    cross join public.rule_clocks(p_tenant) k
  ),
  moved as (  -- the lead's state before (s) and after (last_*) the activity
    select s.*, a.id as activity_id, a.direction as dir, a.channel as chan, a.occurred_at as at,
           greatest(s.last_activity_at, a.occurred_at) as last_at,
           case when a.direction = 'in' then greatest(s.last_inbound_at, a.occurred_at)
                else s.last_inbound_at end as last_in,
           case when a.direction = 'out' then greatest(s.last_outbound_at, a.occurred_at)
                else s.last_outbound_at end as last_out,
           r.*
    from unnest(v_state) s
    join unnest(v_rows) a on a.lead_id = s.lead_id
    cross join rules r
  ),
  judged as (
    select m.*,
           -- Any later activity breaks the silence: NoContact7d, StaleLead30d and HighValueRisk start over.
           m.last_at is distinct from m.last_activity_at as silence_broken,
           -- Anything after our last outbound answers NoReply3d: a reply ends it, a new message restarts it.
           m.at > coalesce(m.last_outbound_at, '-infinity') as after_ours,
           -- HotLead24h counts the inbound after this: the window, our last outbound.
           greatest(now() - m.hot_window, coalesce(m.last_out, '-infinity')) as cutoff
    from moved m
  ),
  answered as (
    select j.*,
           case when j.silence_broken then array['NoContact7d', 'StaleLead30d', 'HighValueRisk'] else '{}' end
           || case when j.after_ours then array['NoReply3d'] else '{}' end as answers
    from judged j
  ),
  moved_state as (
    update public.lead_state s set
      last_activity_at  = j.last_at,
      last_inbound_at   = j.last_in,
      last_outbound_at  = j.last_out,
      no_contact_due_at = case when j.silence_broken then public.clock_add(j.cal, j.b_no_contact, j.last_at, j.t_no_contact) else s.no_contact_due_at end,
      stale_due_at      = case when j.silence_broken then public.clock_add(j.cal, j.b_stale, j.last_at, j.t_stale) else s.stale_due_at end,
      high_value_due_at = case when j.silence_broken then case when s.high_value then public.clock_add(j.cal, j.b_high_value, j.last_at, j.t_high_value) end
                               else s.high_value_due_at end,
      no_reply_due_at   = case when j.after_ours
                               then case when j.last_out > coalesce(j.last_in, '-infinity') then public.clock_add(j.cal, j.b_no_reply, j.last_out, j.t_no_reply) end
                               else s.no_reply_due_at end
    from answered j
    where s.tenant_id = p_tenant and s.lead_id = j.lead_id
  ),
  -- Only when a rule can fire: enabled, not already active, and (HotLead24h) an inbound within the
  -- window after our last outbound, (PreferredChannel) once we have written. HotLead24h reads the
  -- burst only when an earlier inbound may be in the window: the lead's `last_inbound_at` is never
  -- older than its newest stored inbound, so when it is not after the cutoff this inbound is alone.
  ruled as (
    select j.*, o.answered_ids,
           j.dir = 'in' and j.hot_count is not null and not 'HotLead24h' = any (coalesce(o.still_open, '{}'))
             and j.at > j.cutoff and (j.hot_count <= 1 or j.last_inbound_at > j.cutoff) as hot,
           j.preferred_count is not null and not 'PreferredChannel' = any (coalesce(o.still_open, '{}'))
             and j.last_out is not null as preferred
    from answered j
    -- The lead's active alerts: those the activity answers (an outbound also answers HotLead24h, and
    -- PreferredChannel when it uses the lead's channel), and those still active after it.
    cross join lateral (
      select array_agg(x.type) filter (where not x.answered) as still_open,
             array_agg(a.id) filter (where x.answered) as answered_ids
      from public.max_alerts a
      cross join lateral (
        select a.type::text as type,
               a.type::text = any (j.answers)
               or (j.dir = 'out' and j.at > a.cycle_started_at
                   and (a.type = 'HotLead24h' or (a.type = 'PreferredChannel' and a.channel = j.chan))) as answered
      ) x
      where a.tenant_id = p_tenant and a.lead_id = j.lead_id and a.resolved_at is null
    ) o
  )
  select array_agg(row(r.lead_id, b.n, b.since, r.hot and coalesce(b.n, 0) >= r.hot_count,
                       p.channel, o.since,
                       r.preferred and p.channel is not null and cardinality(o.channels) = 2
                         and not p.channel = any (o.channels))::public.ingest_verdict),
         (select array_agg(x.id) from ruled x2 cross join unnest(x2.answered_ids) x(id)),
         jsonb_object_agg(r.lead_id, r.activity_id) filter (where r.answered_ids is not null)
  into v_verdicts, v_answered, v_resolver
  from ruled r
  -- Our last 2 outbound, read in the index's order: PreferredChannel needs both.
  left join lateral (
    select array_agg(x.channel::text) as channels, min(x.occurred_at) as since
    from (select a.channel, a.occurred_at
          from public.lead_activities a
          where a.tenant_id = p_tenant and a.lead_id = r.lead_id
            and a.direction = 'out' and public.counts_as_contact(a.status)
          order by a.occurred_at desc, a.id desc
          limit 2) x
  ) o on r.preferred
  -- The lead's newest inbound (HotLead24h's burst, PreferredChannel's last 5); this activity is
  -- among them (it is stored).
  left join lateral (
    select array_agg(x.channel::text order by x.occurred_at desc, x.id desc) as channels,
           array_agg(x.occurred_at order by x.occurred_at desc, x.id desc) as times
    from (select a.channel, a.occurred_at, a.id
          from public.lead_activities a
          where a.tenant_id = p_tenant and a.lead_id = r.lead_id
            and a.direction = 'in' and public.counts_as_contact(a.status)
          order by a.occurred_at desc, a.id desc
          limit greatest(5, r.hot_count)) x
  ) i on r.hot or (r.preferred and cardinality(o.channels) = 2)
  -- The burst: the last `min_count` inbound that occurred after the cutoff.
  left join lateral (
    select count(*)::integer as n, min(u.at) as since
    from unnest(i.channels, i.times) with ordinality u(channel, at, k)
    where u.k <= r.hot_count and u.at > r.cutoff
  ) b on r.hot
  -- The lead's channel: the one at least `min_count` of the last 5 inbound came on (within the
  -- rule's window, if any), else the directory's (which the lead's state carries).
  left join lateral (
    select coalesce(
             (select u.channel
              from unnest(i.channels, i.times) with ordinality u(channel, at, k)
              where u.k <= 5 and (r.preferred_window is null or u.at > now() - r.preferred_window)
              group by u.channel
              having count(*) >= r.preferred_count
              order by count(*) desc, max(u.at) desc
              limit 1),
             r.preferred_channel::text) as channel
  ) p on r.preferred and cardinality(o.channels) = 2;

  if v_answered is not null then
    -- The alerts judging found answered, by their keys (no join whose method the statistics would
    -- choose); a concurrent resolution is seen and left alone. "Still active" is written so that no
    -- partial index of the active alerts can serve the statement (they all imply `resolved_at is
    -- null`, which this form does not prove): only the primary key, whatever the statistics. Under
    -- those of a mature table analysed with no alert active, the tenant's active alerts looked
    -- empty and the plan read them all, keeping the list's.
    with resolved as (
      update public.max_alerts a
      set resolved_at = now(), resolved_by = 'system', resolution = 'activity',
          resolved_by_activity = (v_resolver ->> a.lead_id)::uuid
      where a.tenant_id = p_tenant and a.id = any (v_answered) and (a.resolved_at is null) is true
      returning a.lead_id, a.type
    )
    select jsonb_object_agg(r.lead_id, r.types) into v_resolved
    from (select r.lead_id, jsonb_agg(r.type order by r.type) as types from resolved r group by r.lead_id) r;
  end if;

  if exists (select from unnest(v_verdicts) v where v.raise_hot or v.raise_pref) then
    -- The rule's message and action in the tenant's language: `{count}`, `{hours}` and `{channel}` filled in.
    with raised as (
      insert into public.max_alerts
        (tenant_id, lead_id, type, severity, message, suggested_action, cycle_started_at, channel)
      select p_tenant, v.lead_id, r.type, r.severity,
             replace(replace(replace(coalesce(r.messages ->> r.locale, r.messages ->> 'fr'),
                                     '{count}', coalesce(e.n::text, '')),
                             '{hours}', coalesce((extract(epoch from r.threshold) / 3600)::integer::text, '')),
                     '{channel}', coalesce(e.channel, '')),
             jsonb_build_object(
               'label', coalesce(r.action -> 'label' ->> r.locale, r.action -> 'label' ->> 'fr'),
               'action', r.action ->> 'action',
               'params', coalesce(r.action -> 'params', '{}'::jsonb) || jsonb_build_object('leadId', v.lead_id)
                         || case when e.channel is null then '{}'::jsonb
                                 else jsonb_build_object('channel', e.channel) end),
             e.since, e.channel::public.channel
      from unnest(v_verdicts) v
      cross join lateral (values ('HotLead24h', v.raise_hot, v.hot_since, v.hot_count, null::text),
                                 ('PreferredChannel', v.raise_pref, v.pref_since, null, v.pref_channel))
        e(type, raise, since, n, channel)
      join public.rules_for(p_tenant) r on r.type = e.type
      where e.raise
      order by v.lead_id, e.type
      returning lead_id, type
    )
    select jsonb_object_agg(c.lead_id, c.types) into v_created
    from (select c.lead_id, jsonb_agg(c.type order by c.type) as types from raised c group by c.lead_id) c;
  end if;

  -- One answer per activity, by its place; a replay answers with what was stored the first time (read
  -- now, in a fresh snapshot: it may have been stored by a transaction that committed meanwhile).
  select jsonb_object_agg(i.ord,
           case when a.id is not null then
             jsonb_build_object('activity', public.activity_json(a),
                                'alerts', jsonb_build_object('created', coalesce(v_created -> a.lead_id, '[]'),
                                                             'resolved', coalesce(v_resolved -> a.lead_id, '[]')),
                                'duplicate', false)
           else
             jsonb_build_object('activity', (select public.activity_json(d) from public.lead_activities d
                                             where d.tenant_id = p_tenant and d.channel = i.channel
                                               and d.external_id = i.external_id),
                                'alerts', jsonb_build_object('created', '[]'::jsonb, 'resolved', '[]'::jsonb),
                                'duplicate', true)
           end)
  into v_results
  from unnest(p_items) i
  left join unnest(v_rows) a on a.lead_id = i.lead_id;
  return v_results;
end
$$;

/**
 * Add or update leads (a JSON array of {lead_id, name, email, phone, owner_id, value, currency,
 * preferred_channel}). A field left out or null keeps its stored value. A new lead starts its
 * silence clock now; a lead whose value crosses the tenant's HighValueRisk threshold starts (or
 * stops) being watched for it. A lead given the phone of a provisional lead (an unknown WhatsApp
 * number) or its email address (an unknown sender of an email, compared case-insensitively) takes
 * it over, with its activities and alerts; the phone of another real lead is a conflict. Users:
 * admins and managers of the tenant only.
 */
create or replace function public.upsert_leads(p_tenant text, p_leads jsonb) returns jsonb
language plpgsql
security definer  -- keeps lead_state in step, which users cannot write themselves
set search_path = ''
as $$
declare
  v_high_value public.alert_rules;
  v_no_contact interval;
  v_stale      interval;
  v_clocks     record;
  v_result     jsonb;
  v_merge      record;
  v_merged     text[] := '{}'::text[];
begin
  perform public.assert_acts_in(p_tenant, array['admin', 'manager']);

  for v_merge in
    select i.lead_id as into_id, l.lead_id as from_id
    from jsonb_to_recordset(p_leads) as i (lead_id text, phone text, email text)
    join public.leads l
      on l.tenant_id = p_tenant and l.provisional and l.lead_id <> i.lead_id
         and (l.phone = i.phone or (l.email is not null and lower(l.email) = lower(i.email)))
  loop
    perform public.merge_lead(p_tenant, v_merge.from_id, v_merge.into_id);
    v_merged := v_merged || v_merge.into_id;
  end loop;

  select * into v_high_value from public.rules_for(p_tenant) r where r.type = 'HighValueRisk' and r.enabled;
  select t.no_contact, t.stale into v_no_contact, v_stale from public.rule_thresholds(p_tenant) t;
  select * into v_clocks from public.rule_clocks(p_tenant);

  with input as (
    select *
    from jsonb_to_recordset(p_leads) as i (lead_id text, name text, email text, phone text, owner_id text,
                                            value numeric, currency text, preferred_channel text)
  ),
  merged as (
    select i.lead_id,
           coalesce(i.name, l.name) as name, coalesce(i.email, l.email) as email,
           coalesce(i.phone, l.phone) as phone, coalesce(i.owner_id, l.owner_id) as owner_id,
           coalesce(i.value, l.value) as value, coalesce(i.currency, l.currency, 'EUR') as currency,
           coalesce(i.preferred_channel, l.preferred_channel) as preferred_channel
    from input i
    left join public.leads l on l.tenant_id = p_tenant and l.lead_id = i.lead_id
  ),
  upserted as (
    insert into public.leads as l (tenant_id, lead_id, name, email, phone, owner_id, value, currency, preferred_channel)
    select p_tenant, m.lead_id, m.name, m.email, m.phone, m.owner_id, m.value, m.currency, m.preferred_channel
    from merged m
    on conflict (tenant_id, lead_id) do update set
      name = excluded.name, email = excluded.email, phone = excluded.phone, owner_id = excluded.owner_id,
      value = excluded.value, currency = excluded.currency, preferred_channel = excluded.preferred_channel,
      provisional = false, updated_at = now()
    returning l.*,
      coalesce(l.value >= v_high_value.min_value and l.currency = v_high_value.currency, false) as high_value
  ),
  watched as (
    insert into public.lead_state as s
      (tenant_id, lead_id, entered_at, high_value, preferred_channel, no_contact_due_at, stale_due_at, high_value_due_at)
    select p_tenant, u.lead_id, now(), u.high_value, u.preferred_channel,
           public.clock_add(v_clocks.calendar, v_clocks.business_no_contact, now(), v_no_contact),
           public.clock_add(v_clocks.calendar, v_clocks.business_stale, now(), v_stale),
           case when u.high_value
                then public.clock_add(v_clocks.calendar, v_clocks.business_high_value, now(), v_high_value.threshold) end
    from upserted u
    on conflict (tenant_id, lead_id) do update set
      high_value = excluded.high_value,
      preferred_channel = excluded.preferred_channel,
      high_value_due_at = case
        when not excluded.high_value then null
        when s.high_value then s.high_value_due_at
        else public.clock_add(v_clocks.calendar, v_clocks.business_high_value, coalesce(s.last_activity_at, s.entered_at),
                              v_high_value.threshold)
      end
    returning 1
  ),
  no_longer_high_value as (
    update public.max_alerts a
    set resolved_at = now(), resolved_by = 'system', resolution = 'rule'
    from upserted u
    where not u.high_value and a.tenant_id = p_tenant and a.lead_id = u.lead_id
      and a.type = 'HighValueRisk' and a.resolved_at is null
    returning 1
  )
  select jsonb_build_object(
    'upserted', count(*),
    'leads', coalesce(jsonb_agg(public.lead_json(
               row(u.tenant_id, u.lead_id, u.name, u.email, u.phone, u.owner_id, u.value, u.currency,
                   u.preferred_channel, u.provisional, u.created_at, u.updated_at)::public.leads) order by u.lead_id), '[]'),
    'merged', to_jsonb(v_merged))
  into v_result
  from upserted u;

  for i in 1 .. cardinality(v_merged) loop
    perform public.refresh_lead_state(p_tenant, v_merged[i]);
  end loop;
  return v_result;
exception
  when unique_violation then  -- raise_error's error, raised here so that the block visibly ends
    raise exception using errcode = 'LW409', message = 'phone is already used by another lead of this tenant',
                          detail = 'phone';
end
$$;

/**
 * Recompute a lead's state from the activities that count as contact, and its due times from
 * the tenant's rules. For the rare changes that invalidate the running state (a send that failed
 * after it was counted, a merge); ingest keeps the state up to date incrementally instead.
 */
create or replace function public.refresh_lead_state(p_tenant text, p_lead_id text) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_rules  record;
  v_clocks record;
begin
  select * into v_rules from public.rule_thresholds(p_tenant);
  select * into v_clocks from public.rule_clocks(p_tenant);

  insert into public.lead_state (tenant_id, lead_id, entered_at) values (p_tenant, p_lead_id, now())
  on conflict do nothing;

  update public.lead_state s set
    entered_at        = least(s.entered_at, a.first_at),
    last_activity_at  = a.last_at,
    last_inbound_at   = a.last_in,
    last_outbound_at  = a.last_out,
    no_contact_due_at = public.clock_add(v_clocks.calendar, v_clocks.business_no_contact,
                                         coalesce(a.last_at, s.entered_at), v_rules.no_contact),
    stale_due_at      = public.clock_add(v_clocks.calendar, v_clocks.business_stale,
                                         coalesce(a.last_at, s.entered_at), v_rules.stale),
    high_value_due_at = case when s.high_value then public.clock_add(v_clocks.calendar, v_clocks.business_high_value, coalesce(a.last_at, s.entered_at),
                                                                   v_rules.high_value) end,
    no_reply_due_at   = case when a.last_out > coalesce(a.last_in, '-infinity')
                             then public.clock_add(v_clocks.calendar, v_clocks.business_no_reply, a.last_out, v_rules.no_reply) end
  from (
    select min(x.occurred_at) as first_at, max(x.occurred_at) as last_at,
           max(x.occurred_at) filter (where x.direction = 'in') as last_in,
           max(x.occurred_at) filter (where x.direction = 'out') as last_out
    from public.lead_activities x
    where x.tenant_id = p_tenant and x.lead_id = p_lead_id and public.counts_as_contact(x.status)
  ) a
  where s.tenant_id = p_tenant and s.lead_id = p_lead_id;
end
$$;
grant execute on function public.refresh_lead_state(text, text) to service_role;

/**
 * Recompute, set-based, the due times of one time-based rule for every lead of a tenant after its
 * rule changed, as log_activity and the sweep would have set them under the new rule: the
 * threshold after the silence began when no alert was raised for it yet, the next step of the
 * ladder while one is active, nothing once the alert was resolved by hand (the same silence is not
 * raised again) or the rule is disabled. For HighValueRisk, which leads are watched follows the
 * value threshold first, and the alerts of leads no longer watched are resolved (`rule`). On the
 * business clock the steps count the tenant's working time (also after its calendar changed).
 */
create or replace function public.recompute_due_times(p_tenant text, p_type text) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_rule public.alert_rules;
  v_cal  public.business_calendars;
begin
  select * into v_rule from public.rules_for(p_tenant) r where r.type = p_type;
  if v_rule.clock = 'business' then
    v_cal := public.calendar_for(p_tenant);
  end if;

  if p_type = 'HighValueRisk' then
    update public.lead_state s
    set high_value = coalesce((select l.value >= v_rule.min_value and l.currency = v_rule.currency and v_rule.enabled
                               from public.leads l where l.tenant_id = s.tenant_id and l.lead_id = s.lead_id), false)
    where s.tenant_id = p_tenant;
    update public.max_alerts a
    set resolved_at = now(), resolved_by = 'system', resolution = 'rule'
    from public.lead_state s
    where a.tenant_id = p_tenant and a.type = 'HighValueRisk' and a.resolved_at is null
      and s.tenant_id = a.tenant_id and s.lead_id = a.lead_id and not s.high_value;
  end if;

  update public.lead_state s set
    no_contact_due_at = case when p_type = 'NoContact7d'   then d.due_at else s.no_contact_due_at end,
    no_reply_due_at   = case when p_type = 'NoReply3d'     then d.due_at else s.no_reply_due_at end,
    stale_due_at      = case when p_type = 'StaleLead30d'  then d.due_at else s.stale_due_at end,
    high_value_due_at = case when p_type = 'HighValueRisk' then d.due_at else s.high_value_due_at end
  from public.lead_state o
  -- When the rule's condition began to hold (null: it does not).
  cross join lateral (select case p_type
    when 'NoReply3d' then case when o.last_outbound_at > coalesce(o.last_inbound_at, '-infinity') then o.last_outbound_at end
    when 'HighValueRisk' then case when o.high_value then coalesce(o.last_activity_at, o.entered_at) end
    else coalesce(o.last_activity_at, o.entered_at)
  end as since) c
  -- The alert this silence raised, if any (the active one first).
  left join lateral (select a.resolved_at, a.severity
                     from public.max_alerts a
                     where a.tenant_id = o.tenant_id and a.lead_id = o.lead_id and a.type = p_type
                       and a.cycle_started_at = c.since
                     order by a.resolved_at is null desc
                     limit 1) a on true
  cross join lateral (select case
    when not v_rule.enabled or c.since is null or a.resolved_at is not null then null
    when a.severity is null then public.clock_add(v_cal, v_rule.clock = 'business', c.since, v_rule.threshold)
    when a.severity is distinct from v_rule.escalated_severity then public.clock_add(v_cal, v_rule.clock = 'business', c.since, v_rule.escalate_after)
  end as due_at) d
  where o.tenant_id = p_tenant and s.tenant_id = o.tenant_id and s.lead_id = o.lead_id;
end
$$;
grant execute on function public.recompute_due_times(text, text) to service_role;

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
        -- the escalation step is computed here, in working time (the planner folds it into the two
        -- expressions that read it: no per-row node in the plan).
        cross join lateral (select case when r.business
                                        then public.clock_add(r.cal, true, c.since, r.escalate_after) end as escalate_at) k
        where c.due_at <= p_now
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

/**
 * Wake the snoozed alerts whose time has come (by `p_now`): back to the active list (`reopened`)
 * with the severity their ladder gives by then (never lower, the ladder counted on the rule's clock)
 * if their condition still holds, else resolved (`rule`). An activity that answered one has already
 * resolved it. Alerts another transaction is changing are left for the next sweep.
 */
create or replace function public.wake_snoozed_alerts(p_tenant text, p_now timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
declare
  v_result jsonb;
begin
  with woken as (
    select a.id, a.tenant_id, a.lead_id, a.type, a.severity
    from public.max_alerts a
    where a.resolved_at is null and a.snoozed_until <= p_now and (p_tenant is null or a.tenant_id = p_tenant)
    for update skip locked
  ),
  -- The ingest-time alerts hold until an activity answers them; the others, while their silence lasts.
  judged as (
    select w.id, w.tenant_id, w.severity as was,
      case
        when r.enabled is not true then null
        when w.type in ('HotLead24h', 'PreferredChannel') then w.severity
        when c.since is null
             or case when r.clock = 'business' then p_now < k.raise_at else p_now - c.since < r.threshold end then null
        when case when r.clock = 'business' then p_now >= k.escalate_at else p_now - c.since >= r.escalate_after end
          then r.escalated_severity
        else r.severity
      end::public.severity as severity
    from woken w
    left join public.lead_state s on s.tenant_id = w.tenant_id and s.lead_id = w.lead_id
    cross join lateral (select case w.type
      when 'NoReply3d' then case when s.last_outbound_at > coalesce(s.last_inbound_at, '-infinity') then s.last_outbound_at end
      when 'HighValueRisk' then case when s.high_value then coalesce(s.last_activity_at, s.entered_at) end
      else coalesce(s.last_activity_at, s.entered_at)
    end as since) c
    left join lateral (select * from public.rules_for(w.tenant_id) x where x.type = w.type) r on true
    -- When the ladder's steps fall due on the rule's clock (read only for the business clock).
    left join lateral (select public.clock_add(g, true, c.since, r.threshold) as raise_at,
                              public.clock_add(g, true, c.since, r.escalate_after) as escalate_at
                       from public.calendar_for(w.tenant_id) g) k on r.clock = 'business'
  ),
  reopened as (
    update public.max_alerts a
    set snoozed_until = null,
        severity = case when j.severity = 'high' or (j.severity = 'med' and a.severity = 'low') then j.severity
                        else a.severity end,
        escalated_at = case when j.severity is distinct from a.severity
                             and (j.severity = 'high' or (j.severity = 'med' and a.severity = 'low'))
                            then now() else a.escalated_at end
    from judged j
    where a.tenant_id = j.tenant_id and a.id = j.id and j.severity is not null
    returning a.*
  ),
  reopen_events as (
    insert into public.alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor)
    select r.tenant_id, r.id, r.lead_id, r.type, 'reopened', r.severity, 'system'
    from reopened r
    returning 1
  ),
  resolved as (
    update public.max_alerts a
    set resolved_at = now(), resolved_by = 'system', resolution = 'rule'
    from judged j
    where a.tenant_id = j.tenant_id and a.id = j.id and j.severity is null
    returning 1
  )
  select jsonb_build_object('reopened', (select count(*) from reopen_events), 'resolved', (select count(*) from resolved))
  into v_result;
  return v_result;
end
$function$
;

/**
 * Mark overdue, once, every high alert still unresolved (and not snoozed) past its tenant's delay
 * (`overdue_after`, default 24 h) since it became high, recording an `overdue` event for the
 * notifications to deliver; on the business clock the delay counts the tenant's working time.
 * Answers how many it marked.
 */
create or replace function public.mark_overdue_alerts(p_tenant text, p_now timestamp with time zone)
 RETURNS integer
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
declare
  v_marked integer;
begin
  with candidates as (
    select a.id, a.tenant_id, a.type, coalesce(a.escalated_at, a.created_at) as high_since
    from public.max_alerts a
    where a.resolved_at is null and a.severity_rank = 1 and a.overdue_at is null and a.snoozed_until is null
      and coalesce(a.escalated_at, a.created_at) <= p_now - (select min(r.overdue_after) from public.alert_rules r)
      and coalesce(a.escalated_at, a.created_at) < now()  -- not one this very sweep made high (p_now may run ahead)
      and (p_tenant is null or a.tenant_id = p_tenant)
    for update skip locked
  ),
  calendars as materialized (  -- each tenant's calendar, read once
    select t.tenant_id, public.calendar_for(t.tenant_id) as cal from (select distinct c.tenant_id from candidates c) t
  ),
  marked as (
    update public.max_alerts a
    set overdue_at = p_now
    from candidates c
    cross join lateral (select x.overdue_after, x.clock from public.rules_for(c.tenant_id) x where x.type = c.type) r
    join calendars g on g.tenant_id = c.tenant_id
    where a.tenant_id = c.tenant_id and a.id = c.id
      and case when r.clock = 'business'  -- the delay counts the tenant's working time
               then public.clock_add(g.cal, true, c.high_since, r.overdue_after) <= p_now
               else c.high_since <= p_now - r.overdue_after end
    returning a.*
  ),
  events as (
    insert into public.alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor)
    select m.tenant_id, m.id, m.lead_id, m.type, 'overdue', m.severity, 'system'
    from marked m
    returning 1
  )
  select count(*) into v_marked from events;
  return v_marked;
end
$function$
;

/** A rule as the API shows it (with its clock); `source` says whether it is the default or the tenant's own. */
create or replace function public.rule_json(p_rule public.alert_rules) returns jsonb
language sql immutable
as $$
  select jsonb_build_object(
    'type', p_rule.type, 'enabled', p_rule.enabled, 'threshold', public.duration_text(p_rule.threshold),
    'severity', p_rule.severity, 'escalate_after', public.duration_text(p_rule.escalate_after),
    'escalated_severity', p_rule.escalated_severity, 'min_count', p_rule.min_count,
    'min_value', p_rule.min_value, 'currency', p_rule.currency, 'supersedes', p_rule.supersedes,
    'locale', p_rule.locale, 'messages', p_rule.messages, 'action', p_rule.action,
    'overdue_after', public.duration_text(p_rule.overdue_after), 'clock', p_rule.clock,
    'source', case when p_rule.tenant_id = '*' then 'default' else 'tenant' end)
$$;
grant execute on function public.rule_json(public.alert_rules) to authenticated, service_role;

/**
 * Change the tenant's rule of one type: the fields present in `p_changes` (enabled, threshold,
 * severity, escalate_after, escalated_severity, min_count, min_value, currency, locale, messages
 * and action_text per locale — merged into what is in force —, overdue_after, clock (the ingest-time
 * rules' windows stay elapsed time, their clock counts only the overdue delay), and the suggested
 * action: `action` (send_whatsapp, send_email, switch_channel, call_lead; its label becomes the
 * action's default), `action_label` and `action_subject` (an email's subject) per locale, merged)
 * replace those of the rule in force, into the tenant's own row. Validated: a threshold is
 * positive, a ladder rises (later and higher), the messages include the rule's locale, a WhatsApp
 * or email follow-up has a text in it, the clock is calendar or business. Takes effect at once for
 * every lead of the tenant: stored due times are recomputed, and a disabled rule's active alerts
 * resolved (`rule`). Admins of the tenant and platform staff only.
 */
create or replace function public.set_rule(p_tenant text, p_type text, p_changes jsonb) returns jsonb
language plpgsql
security definer  -- writes the tenant's rules and its leads' state, which users cannot write themselves
set search_path = ''
as $$
declare
  v_rule public.alert_rules;
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  if p_tenant = '*' then
    perform public.raise_error('LW422', 'the defaults are changed by a migration, not per tenant', 'tenant');
  end if;
  select * into v_rule from public.rules_for(p_tenant) r where r.type = p_type;
  if not found then
    perform public.raise_error('LW404', 'no rule of this type', 'type');
  end if;

  v_rule.tenant_id := p_tenant;
  if p_changes ? 'enabled' then v_rule.enabled := (p_changes ->> 'enabled')::boolean; end if;
  if p_changes ? 'threshold' then v_rule.threshold := (p_changes ->> 'threshold')::interval; end if;
  if p_changes ? 'severity' then v_rule.severity := p_changes ->> 'severity'; end if;
  if p_changes ? 'escalate_after' then v_rule.escalate_after := (p_changes ->> 'escalate_after')::interval; end if;
  if p_changes ? 'escalated_severity' then v_rule.escalated_severity := p_changes ->> 'escalated_severity'; end if;
  if p_changes ? 'min_count' then v_rule.min_count := (p_changes ->> 'min_count')::smallint; end if;
  if p_changes ? 'min_value' then v_rule.min_value := (p_changes ->> 'min_value')::numeric; end if;
  if p_changes ? 'currency' then v_rule.currency := p_changes ->> 'currency'; end if;
  if p_changes ? 'locale' then v_rule.locale := p_changes ->> 'locale'; end if;
  if p_changes ? 'overdue_after' then v_rule.overdue_after := (p_changes ->> 'overdue_after')::interval; end if;
  if p_changes ? 'clock' then v_rule.clock := p_changes ->> 'clock'; end if;
  if p_changes ? 'messages' then v_rule.messages := v_rule.messages || (p_changes -> 'messages'); end if;
  if p_changes ? 'action' then
    if p_changes ->> 'action' is null
       or p_changes ->> 'action' not in ('send_whatsapp', 'send_email', 'switch_channel', 'call_lead') then
      perform public.raise_error('LW422', 'action must be send_whatsapp, send_email, switch_channel or call_lead',
                                 'action');
    end if;
    v_rule.action := v_rule.action || jsonb_build_object(
      'action', p_changes ->> 'action',
      'label', case p_changes ->> 'action'
                 when 'send_email' then '{"fr": "Relancer par email", "en": "Follow up by email"}'::jsonb
                 when 'send_whatsapp' then '{"fr": "Relancer par WhatsApp", "en": "Follow up on WhatsApp"}'::jsonb
                 when 'switch_channel' then
                   '{"fr": "Recontacter sur son canal préféré", "en": "Reach out on their preferred channel"}'::jsonb
                 else '{"fr": "Appeler le lead", "en": "Call the lead"}'::jsonb end);
  end if;
  if p_changes ? 'action_label' then
    v_rule.action := jsonb_set(v_rule.action, '{label}', coalesce(v_rule.action -> 'label', '{}') || (p_changes -> 'action_label'));
  end if;
  if p_changes ? 'action_text' then
    v_rule.action := jsonb_set(v_rule.action, '{text}', coalesce(v_rule.action -> 'text', '{}') || (p_changes -> 'action_text'));
  end if;
  if p_changes ? 'action_subject' then
    v_rule.action := jsonb_set(v_rule.action, '{subject}',
                               coalesce(v_rule.action -> 'subject', '{}') || (p_changes -> 'action_subject'));
  end if;
  if v_rule.action ->> 'action' in ('send_whatsapp', 'send_email')
     and v_rule.action -> 'text' ->> v_rule.locale is null then
    perform public.raise_error('LW422', format('actionText must include the rule''s locale (%s) for a message to send',
                                               v_rule.locale), 'actionText');
  end if;

  if v_rule.threshold is null and p_type <> 'PreferredChannel' then
    perform public.raise_error('LW422', 'threshold is required for this rule', 'threshold');
  end if;
  if v_rule.threshold <= interval '0' then
    perform public.raise_error('LW422', 'threshold must be positive', 'threshold');
  end if;
  if (v_rule.escalate_after is null) <> (v_rule.escalated_severity is null) then
    perform public.raise_error('LW422', 'escalateAfter and escalatedSeverity go together', 'escalateAfter');
  end if;
  if v_rule.escalate_after <= v_rule.threshold then
    perform public.raise_error('LW422', 'escalateAfter must be longer than threshold (a ladder rises)', 'escalateAfter');
  end if;
  if (case v_rule.escalated_severity when 'high' then 1 when 'med' then 2 when 'low' then 3 end)
     >= (case v_rule.severity when 'high' then 1 when 'med' then 2 else 3 end) then
    perform public.raise_error('LW422', 'escalatedSeverity must be higher than severity (a ladder rises)',
                               'escalatedSeverity');
  end if;
  if p_type in ('HotLead24h', 'PreferredChannel') and v_rule.min_count is null then
    perform public.raise_error('LW422', 'minCount is required for this rule', 'minCount');
  end if;
  if p_type = 'PreferredChannel' and v_rule.min_count > 5 then
    perform public.raise_error('LW422', 'minCount counts among the last 5 inbound: at most 5', 'minCount');
  end if;
  if p_type = 'HighValueRisk' and (v_rule.min_value is null or v_rule.currency is null) then
    perform public.raise_error('LW422', 'minValue and currency are required for this rule', 'minValue');
  end if;
  if v_rule.clock is null or v_rule.clock not in ('calendar', 'business') then
    perform public.raise_error('LW422', 'clock is calendar or business', 'clock');
  end if;
  if v_rule.messages ->> v_rule.locale is null then
    perform public.raise_error('LW422', format('messages must include the rule''s locale (%s)', v_rule.locale), 'messages');
  end if;

  insert into public.alert_rules as r
  select v_rule.*
  on conflict (tenant_id, type) do update set
    enabled = excluded.enabled, threshold = excluded.threshold, severity = excluded.severity,
    escalate_after = excluded.escalate_after, escalated_severity = excluded.escalated_severity,
    min_value = excluded.min_value, currency = excluded.currency, supersedes = excluded.supersedes,
    locale = excluded.locale, messages = excluded.messages, action = excluded.action,
    min_count = excluded.min_count, overdue_after = excluded.overdue_after, clock = excluded.clock;

  if p_type in ('NoContact7d', 'NoReply3d', 'StaleLead30d', 'HighValueRisk') then
    perform public.recompute_due_times(p_tenant, p_type);
  end if;
  if not v_rule.enabled then
    update public.max_alerts a
    set resolved_at = now(), resolved_by = 'system', resolution = 'rule'
    where a.tenant_id = p_tenant and a.type = p_type and a.resolved_at is null;
  end if;
  return jsonb_build_object('rule', public.rule_json(v_rule));
end
$$;
grant execute on function public.set_rule(text, text, jsonb) to authenticated, service_role;
