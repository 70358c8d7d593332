-- Analytics and exports: the alert lifecycle by day (live, or from day summaries kept up to date)
-- and the CSV exports of alerts and activities.

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Tables ------------------------------------------------------------------------------------------

/** One local day of a tenant's alert history in one time zone, for one owner and one alert type.
 * owner_key '' is "no owner", '*' every owner; type_key '*' every type. The ('*', '*') row exists
 * for every summarised day (zeros included): it marks the day as summarised. */
create table public.alert_day_rollups (
  tenant_id   text not null,
  tz          text not null,
  day         date not null,
  owner_key   text not null,
  type_key    text not null,
  created     integer not null,  -- events of the day, by event
  escalated   integer not null,
  resolved    integer not null,
  resolutions integer not null,  -- alerts whose resolved_at falls in the day
  within_24h  integer not null,  -- of which resolved within 24 h of creation
  cum         integer[] not null,  -- cum[b]: resolution times <= alert_rollup_edges()[b]
  hours       float8[] not null,   -- the resolution times in hours, ascending
  until       timestamptz,           -- on the ('*', '*') row of the open day: summarised up to here (null: whole day)
  built_at    timestamptz not null default now(),
  constraint alert_day_rollups_pkey primary key (tenant_id, tz, day, owner_key, type_key)
);

/** Per tenant: up to when 'reopened' events have been checked against the summaries. */
create table public.alert_rollup_marks (
  tenant_id    text not null,
  reopens_seen timestamptz not null,
  constraint alert_rollup_marks_pkey primary key (tenant_id)
);

-- Grants and row-level security -------------------------------------------------------------------

grant select on table public.alert_day_rollups to authenticated, service_role;
grant select on table public.alert_rollup_marks to service_role;

alter table public.alert_day_rollups enable row level security;
alter table public.alert_rollup_marks enable row level security;

-- Triggers ----------------------------------------------------------------------------------------

/** A truncated history (tests, restores): no summary survives it. */
create or replace function public.forget_all_alert_days() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from public.alert_day_rollups;
  return null;
end
$$;

create trigger alert_events_forget_rollups_on_truncate after truncate on public.alert_events
  for each statement execute function public.forget_all_alert_days();

/** A lead changing owner, entering the directory with history or leaving it: its days' summaries by owner change. */
create or replace function public.forget_reowned_alert_days() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_leads   text[];
  v_tenant  text;
  v_moments timestamptz[];
begin
  if tg_op = 'INSERT' then
    select array_agg(n.tenant_id || E'\n' || n.lead_id) into v_leads from new_leads n where n.owner_id is not null;
  elsif tg_op = 'DELETE' then
    select array_agg(o.tenant_id || E'\n' || o.lead_id) into v_leads from old_leads o where o.owner_id is not null;
  else
    select array_agg(n.tenant_id || E'\n' || n.lead_id) into v_leads
    from new_leads n join old_leads o on o.tenant_id = n.tenant_id and o.lead_id = n.lead_id
    where o.owner_id is distinct from n.owner_id;
  end if;
  -- Tenant by tenant (a statement writes one tenant's leads, seldom more), each read naming its
  -- tenant: a tenant without summaries costs one probe of their key (and on Citus every read stays
  -- on the shard of its tenant).
  for v_tenant in select distinct split_part(k, E'\n', 1) from unnest(v_leads) k loop
    continue when not exists (select from public.alert_day_rollups r where r.tenant_id = v_tenant);
    select array_agg(distinct e.at) into v_moments
    from unnest(v_leads) k
    join public.alert_events e on e.tenant_id = v_tenant and e.lead_id = split_part(k, E'\n', 2)
    where split_part(k, E'\n', 1) = v_tenant;
    if v_moments is not null then
      perform public.forget_alert_rollups(v_tenant, v_moments);
    end if;
  end loop;
  return null;
end
$$;

create trigger leads_forget_rollups_on_update after update on public.leads
  referencing old table as old_leads new table as new_leads
  for each statement execute function public.forget_reowned_alert_days();

create trigger leads_forget_rollups_on_insert after insert on public.leads
  referencing new table as new_leads
  for each statement execute function public.forget_reowned_alert_days();

create trigger leads_forget_rollups_on_delete after delete on public.leads
  referencing old table as old_leads
  for each statement execute function public.forget_reowned_alert_days();

/** History rewritten (merge_lead moving a lead's events, retention deleting them): drop the days' summaries. */
create or replace function public.forget_rewritten_alert_days() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_tenant record;
begin
  for v_tenant in select o.tenant_id, array_agg(distinct o.at) as moments from old_events o group by o.tenant_id loop
    perform public.forget_alert_rollups(v_tenant.tenant_id, v_tenant.moments);
  end loop;
  return null;
end
$$;

create trigger alert_events_forget_rollups_on_update after update on public.alert_events
  referencing old table as old_events
  for each statement execute function public.forget_rewritten_alert_days();

create trigger alert_events_forget_rollups_on_delete after delete on public.alert_events
  referencing old table as old_events
  for each statement execute function public.forget_rewritten_alert_days();

-- Policies ----------------------------------------------------------------------------------------

-- As the live figures: staff see their tenant's summaries, agents the rows of their own leads.
create policy "Summaries are visible to the staff of their tenant, and an agent's to the agent" on public.alert_day_rollups
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant())
             and ((select public.sees_whole_tenant())
                  or ((select public.current_app_role()) = 'agent'
                      and owner_key = (select auth.jwt()) ->> 'sub'))));

-- Functions ---------------------------------------------------------------------------------------

/**
 * The alerts' figures for the days `p_from` to `p_to` (inclusive) as lived in time zone `p_tz`:
 * - per_day: every day of the range, with the created, escalated and resolved events of that day;
 * - resolved_within_24h and time_to_resolve (median and p90 in hours, by type and by the lead's
 *   owner): the alerts whose resolution falls in the range, measured from creation to resolution;
 * - open_by_age: the alerts open now, by how long ago they were created.
 * Runs as the caller, so row-level security applies: an agent gets the figures of their own leads.
 * Invalid: a time zone Postgres does not know (tz), a range that ends before it starts or spans
 * more than 366 days (to).
 */
create or replace function public.alert_analytics_live(p_tenant text, p_from date, p_to date, p_tz text default 'UTC')
returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_start timestamptz;
  v_end   timestamptz;
  v_result jsonb;
begin
  begin
    v_start := p_from::timestamp at time zone p_tz;
    v_end := (p_to + 1)::timestamp at time zone p_tz;
  exception when invalid_parameter_value then
    perform public.raise_error('LW422', 'unknown time zone', 'tz');
  end;
  if p_to < p_from or p_to - p_from >= 366 then
    perform public.raise_error('LW422', 'the range must end on or after its start and span at most 366 days', 'to');
  end if;

  -- Counted by quarter of an hour first (every time zone's offset is a whole number of quarters,
  -- so none straddles a local midnight), then by local day: the zone is applied per quarter, not per event.
  with quarters as (
    select date_bin('15 minutes', e.at, timestamptz '2000-01-01 00:00+00') as quarter,
           count(*) filter (where e.event = 'created') as created,
           count(*) filter (where e.event = 'resolved') as resolved,
           count(*) filter (where e.event = 'escalated') as escalated
    from public.alert_events e
    where e.tenant_id = p_tenant and e.at >= v_start and e.at < v_end
      and e.event in ('created', 'escalated', 'resolved')
    group by 1
  ),
  per_day as (
    select (q.quarter at time zone p_tz)::date as day,
           sum(q.created) as created, sum(q.resolved) as resolved, sum(q.escalated) as escalated
    from quarters q
    group by 1
  ),
  resolved as (
    select a.type, l.owner_id, (extract(epoch from a.resolved_at - a.created_at) / 3600)::float8 as hours
    from public.max_alerts a
    left join public.leads l on l.tenant_id = a.tenant_id and l.lead_id = a.lead_id
    where a.tenant_id = p_tenant and a.resolved_at >= v_start and a.resolved_at < v_end
  ),
  by_type as (
    select r.type, count(*) as count,
           round(percentile_cont(0.5) within group (order by r.hours)::numeric, 2) as median_hours,
           round(percentile_cont(0.9) within group (order by r.hours)::numeric, 2) as p90_hours
    from resolved r group by r.type
  ),
  by_owner as (
    select r.owner_id, count(*) as count,
           round(percentile_cont(0.5) within group (order by r.hours)::numeric, 2) as median_hours,
           round(percentile_cont(0.9) within group (order by r.hours)::numeric, 2) as p90_hours
    from resolved r group by r.owner_id
  ),
  open_by_age as (
    select case when o.age < interval '1 day' then '<1d'
                when o.age < interval '3 days' then '1-3d'
                when o.age < interval '7 days' then '3-7d'
                when o.age < interval '30 days' then '7-30d'
                else '>30d' end as bucket,
           count(*) as count
    from (select now() - a.created_at as age
          from public.max_alerts a
          where a.tenant_id = p_tenant and a.resolved_at is null) o
    group by 1
  )
  select jsonb_build_object(
    'from', p_from, 'to', p_to, 'tz', p_tz,
    'per_day', (select jsonb_agg(jsonb_build_object(
                         'day', d.day::date, 'created', coalesce(c.created, 0),
                         'resolved', coalesce(c.resolved, 0), 'escalated', coalesce(c.escalated, 0))
                       order by d.day)
                from generate_series(p_from::timestamp, p_to::timestamp, interval '1 day') d(day)
                left join per_day c on c.day = d.day::date),
    'resolved_within_24h', (select jsonb_build_object(
                              'resolved', count(*),
                              'within_24h', count(*) filter (where r.hours <= 24),
                              'share', round((count(*) filter (where r.hours <= 24))::numeric / nullif(count(*), 0), 4))
                            from resolved r),
    'time_to_resolve', jsonb_build_object(
      'by_type', coalesce((select jsonb_agg(to_jsonb(t) order by t.type) from by_type t), '[]'),
      'by_owner', coalesce((select jsonb_agg(to_jsonb(o) order by o.owner_id nulls last) from by_owner o), '[]')),
    'open_by_age', (select jsonb_agg(jsonb_build_object('bucket', b.bucket, 'count', coalesce(o.count, 0)) order by b.n)
                    from unnest(array['<1d', '1-3d', '3-7d', '7-30d', '>30d']) with ordinality b(bucket, n)
                    left join open_by_age o on o.bucket = b.bucket))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.alert_analytics_live(text, date, date, text) to authenticated, service_role;

/**
 * As alert_analytics_live (above), from the summaries of the closed days plus the open part computed live: the
 * same figures. Percentiles: the ranks' bins are found from the summed cumulative counts, and only
 * the times in those bins are read and ordered; the interpolation is percentile_cont's.
 */
create or replace function public.alert_analytics(p_tenant text, p_from date, p_to date, p_tz text default 'UTC')
returns jsonb
language plpgsql volatile
set search_path = ''
set work_mem = '32MB'  -- the percentiles' bins in memory (~15 MB at 1M events a month)
as $$
declare
  v_end   timestamptz;
  v_cut   timestamptz;
  v_scope text;
  v_result jsonb;
begin
  begin
    perform p_from::timestamp at time zone p_tz;  -- a time zone PostgreSQL does not know raises here
    v_end := (p_to + 1)::timestamp at time zone p_tz;
  exception when invalid_parameter_value then
    perform public.raise_error('LW422', 'unknown time zone', 'tz');
  end;
  if p_to < p_from or p_to - p_from >= 366 then
    perform public.raise_error('LW422', 'the range must end on or after its start and span at most 366 days', 'to');
  end if;

  -- Whose figures: the whole tenant ('*'), an agent's own leads (their id), or nothing (null).
  v_scope := case
    when (select public.sees_all_tenants()) then '*'
    when p_tenant = (select public.current_tenant()) and (select public.sees_whole_tenant()) then '*'
    when p_tenant = (select public.current_tenant()) and (select public.current_app_role()) = 'agent'
      then (select auth.jwt()) ->> 'sub'
  end;
  v_cut := public.summarise_alert_days(p_tenant, p_from, p_to, p_tz);

  with pieces as materialized (
    select r.day, r.owner_key, r.type_key, r.created, r.escalated, r.resolved, r.resolutions, r.within_24h,
           r.cum, r.hours
    from public.alert_day_rollups r
    where r.tenant_id = p_tenant and r.tz = p_tz and r.day between p_from and p_to
      and (r.owner_key = v_scope or (v_scope = '*' and r.type_key = '*'))
    union all
    select s.day, s.owner_key, s.type_key, s.created, s.escalated, s.resolved, s.resolutions, s.within_24h,
           s.cum, s.hours
    from public.alert_rollup_rows(p_tenant, p_tz, v_cut, v_end) s
    where s.owner_key = v_scope or (v_scope = '*' and s.type_key = '*')
  ),
  totals as (  -- the caller's whole scope, per day
    select p.* from pieces p where p.owner_key = v_scope and p.type_key = '*'
  ),
  -- The groups whose percentiles are asked: per type (in the scope) and per owner, numbered.
  parts as (
    select dense_rank() over (order by g.kind, g.key)::integer as gid, g.*
    from (select 't' collate "C" as kind, p.type_key collate "C" as key, p.cum, p.hours
          from pieces p where p.owner_key = v_scope and p.type_key <> '*'
          union all
          select 'o', p.owner_key collate "C", p.cum, p.hours
          from pieces p where p.type_key = '*' and (p.owner_key <> '*' or v_scope <> '*')) g
  ),
  bins as (  -- per group and bin: how many times up to the bin's upper edge, and up to its lower one
    select g.gid, g.b, g.upto, coalesce(lag(g.upto) over (partition by g.gid order by g.b), 0) as below
    from (select p.gid, u.b::integer as b, sum(u.c)::bigint as upto
          from parts p cross join lateral unnest(p.cum) with ordinality u(c, b)
          group by p.gid, u.b) g
  ),
  groups as (
    select p.gid, min(p.kind) as kind, min(p.key) as key, max(b.n) as n
    from parts p join (select b.gid, max(b.upto) as n from bins b group by b.gid) b on b.gid = p.gid
    group by p.gid having max(b.n) > 0
  ),
  ranks as (  -- percentile_cont's two rows (1-based) around position p * (n - 1)
    select g.gid, g.kind, g.key, g.n, q.p, q.p * (g.n - 1) as pos,
           floor(q.p * (g.n - 1))::bigint + 1 as r_lo, ceil(q.p * (g.n - 1))::bigint + 1 as r_hi
    from groups g cross join (values (0.5::float8), (0.9::float8)) q(p)
  ),
  wanted as (
    select distinct r.gid, w.r, b.b, b.below
    from ranks r
    cross join lateral unnest(array[r.r_lo, r.r_hi]) w(r)
    join bins b on b.gid = r.gid and b.below < w.r and w.r <= b.upto
  ),
  picked as (  -- the value of each rank: read and ordered among the times of its bin only
    select w.gid, w.r,
           (select v.v
            from parts p cross join lateral unnest(p.hours[coalesce(p.cum[w.b - 1], 0) + 1 : p.cum[w.b]]) v(v)
            where p.gid = w.gid
            order by v.v offset w.r - w.below - 1 limit 1) as v
    from wanted w
  ),
  stats as (
    select r.kind, r.key, r.n,
           round((lo.v + (r.pos - floor(r.pos)) * (hi.v - lo.v))::numeric, 2) as value, r.p
    from ranks r
    join picked lo on lo.gid = r.gid and lo.r = r.r_lo
    join picked hi on hi.gid = r.gid and hi.r = r.r_hi
  ),
  figures as (
    select s.kind, s.key, s.n as count,
           max(s.value) filter (where s.p = 0.5) as median_hours,
           max(s.value) filter (where s.p = 0.9) as p90_hours
    from stats s group by s.kind, s.key, s.n
  ),
  per_day as (
    select t.day, sum(t.created) as created, sum(t.resolved) as resolved, sum(t.escalated) as escalated
    from totals t group by t.day
  ),
  open_by_age as (
    select case when o.age < interval '1 day' then '<1d'
                when o.age < interval '3 days' then '1-3d'
                when o.age < interval '7 days' then '3-7d'
                when o.age < interval '30 days' then '7-30d'
                else '>30d' end as bucket,
           count(*) as count
    from (select now() - a.created_at as age
          from public.max_alerts a
          where a.tenant_id = p_tenant and a.resolved_at is null) o
    group by 1
  )
  select jsonb_build_object(
    'from', p_from, 'to', p_to, 'tz', p_tz,
    'per_day', (select jsonb_agg(jsonb_build_object(
                         'day', d.day::date, 'created', coalesce(c.created, 0),
                         'resolved', coalesce(c.resolved, 0), 'escalated', coalesce(c.escalated, 0))
                       order by d.day)
                from generate_series(p_from::timestamp, p_to::timestamp, interval '1 day') d(day)
                left join per_day c on c.day = d.day::date),
    'resolved_within_24h', (select jsonb_build_object(
                              'resolved', coalesce(sum(t.resolutions), 0),
                              'within_24h', coalesce(sum(t.within_24h), 0),
                              'share', round(sum(t.within_24h)::numeric / nullif(sum(t.resolutions), 0), 4))
                            from totals t),
    'time_to_resolve', jsonb_build_object(
      'by_type', coalesce((select jsonb_agg(jsonb_build_object('type', f.key, 'count', f.count,
                                                               'median_hours', f.median_hours,
                                                               'p90_hours', f.p90_hours)
                                     order by f.key collate "default")
                           from figures f where f.kind = 't'), '[]'),
      'by_owner', coalesce((select jsonb_agg(jsonb_build_object('owner_id', nullif(f.key, ''), 'count', f.count,
                                                                'median_hours', f.median_hours,
                                                                'p90_hours', f.p90_hours)
                                             order by nullif(f.key, '') collate "default" nulls last)
                            from figures f where f.kind = 'o'), '[]')),
    'open_by_age', (select jsonb_agg(jsonb_build_object('bucket', b.bucket, 'count', coalesce(o.count, 0)) order by b.n)
                    from unnest(array['<1d', '1-3d', '3-7d', '7-30d', '>30d']) with ordinality b(bucket, n)
                    left join open_by_age o on o.bucket = b.bucket))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.alert_analytics(text, date, date, text) to authenticated, service_role;

/**
 * One page of a tenant's alerts, oldest first: the active ones (`p_state` 'active') or all of them
 * ('all'), with the list's filters (severity, type, lead) and a range on their creation time
 * [`p_from`, `p_to`). `p_cursor` is the `next_cursor` of the previous page (null after the last).
 * Runs as the caller: a user exports what row-level security shows them, as in the lists.
 */
create or replace function public.export_alerts(
  p_tenant   text,
  p_state    text default 'active',
  p_severity text default null,
  p_type     text default null,
  p_lead_id  text default null,
  p_from     timestamptz default null,
  p_to       timestamptz default null,
  p_limit    integer default 1000,
  p_cursor   jsonb default null
) returns jsonb
language plpgsql stable
set search_path = ''
set plan_cache_mode = force_custom_plan  -- plan each page with its real filters and cursor
as $$
declare
  v_result jsonb;
begin
  if p_state not in ('active', 'all') then
    perform public.raise_error('LW422', 'state must be active or all', 'state');
  end if;

  with page as (
    select a.*, l.name as lead_name, l.email as lead_email, l.owner_id,
           row_number() over (order by a.created_at, a.id) as n
    from (
      select a.*
      from public.max_alerts a
      where a.tenant_id = p_tenant
        and (p_state = 'all' or a.resolved_at is null)
        and (p_severity is null or a.severity = p_severity)
        and (p_type is null or a.type = p_type)
        and (p_lead_id is null or a.lead_id = p_lead_id)
        and (p_from is null or a.created_at >= p_from)
        and (p_to is null or a.created_at < p_to)
        and (p_cursor is null
             or (a.created_at, a.id) > ((p_cursor ->> 'c')::timestamptz, (p_cursor ->> 'i')::uuid))
      order by a.created_at, a.id
      limit p_limit + 1
    ) a
    left join public.leads l on l.tenant_id = a.tenant_id and l.lead_id = a.lead_id
  )
  select jsonb_build_object(
    'rows', coalesce((select jsonb_agg(jsonb_build_object(
                        'id', p.id, 'lead_id', p.lead_id, 'lead_name', p.lead_name, 'lead_email', p.lead_email,
                        'owner_id', p.owner_id, 'type', p.type, 'severity', p.severity, 'message', p.message,
                        'action', p.suggested_action ->> 'action', 'created_at', p.created_at,
                        'escalated_at', p.escalated_at, 'resolved_at', p.resolved_at,
                        'resolved_by', p.resolved_by, 'resolution', p.resolution) order by p.n)
                      from page p where p.n <= p_limit), '[]'),
    'next_cursor', (select jsonb_build_object('c', p.created_at, 'i', p.id)
                    from page p where p.n = p_limit and exists (select from page q where q.n > p_limit)))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.export_alerts(text, text, text, text, text, timestamptz, timestamptz, integer, jsonb) to authenticated, service_role;

/**
 * One page of a tenant's activities (or one lead's), in the order they happened, within
 * [`p_from`, `p_to`) on `occurred_at`. Runs as the caller, as the timeline does.
 */
create or replace function public.export_activities(
  p_tenant  text,
  p_lead_id text default null,
  p_from    timestamptz default null,
  p_to      timestamptz default null,
  p_limit   integer default 1000,
  p_cursor  jsonb default null
) returns jsonb
language plpgsql stable
set search_path = ''
set plan_cache_mode = force_custom_plan
as $$
declare
  v_result jsonb;
begin
  with page as (
    select a, row_number() over (order by a.occurred_at, a.id) as n
    from public.lead_activities a
    where a.tenant_id = p_tenant
      and (p_lead_id is null or a.lead_id = p_lead_id)
      and (p_from is null or a.occurred_at >= p_from)
      and (p_to is null or a.occurred_at < p_to)
      and (p_cursor is null
           or (a.occurred_at, a.id) > ((p_cursor ->> 'o')::timestamptz, (p_cursor ->> 'i')::uuid))
    order by a.occurred_at, a.id
    limit p_limit + 1
  )
  select jsonb_build_object(
    'rows', coalesce((select jsonb_agg(public.activity_json(p.a) order by p.n) from page p where p.n <= p_limit), '[]'),
    'next_cursor', (select jsonb_build_object('o', (p.a).occurred_at, 'i', (p.a).id)
                    from page p where p.n = p_limit and exists (select from page q where q.n > p_limit)))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.export_activities(text, text, timestamptz, timestamptz, integer, jsonb) to authenticated, service_role;

/** The bin edges of resolution times, in hours: (b/3)^2 for b = 1..47 (up to ~245 h), then infinity. */
create or replace function public.alert_rollup_edges() returns float8[]
language sql immutable parallel safe
set search_path = ''
as $$
  select array_append(array(select (b / 3.0)::float8 ^ 2 from generate_series(1, 47) b), 'Infinity'::float8)
$$;
grant execute on function public.alert_rollup_edges() to authenticated, service_role;

/**
 * The summary rows of the alert history between `p_start` and `p_end`, by local day in `p_tz`,
 * owner and type (grouping sets: per owner and type, per owner, per type, per day). Reads as the
 * caller: row-level security applies (the live part of an agent's figures is their own).
 */
create or replace function public.alert_rollup_rows(p_tenant text, p_tz text, p_start timestamptz, p_end timestamptz)
returns table (day date, owner_key text, type_key text, created integer, escalated integer, resolved integer,
               resolutions integer, within_24h integer, cum integer[], hours float8[])
language sql stable
set search_path = ''
as $$
  with history as (  -- the range's events and resolutions, each with its lead
    select e.at, e.lead_id, e.type, e.event, null::float8 as hours
    from public.alert_events e
    where e.tenant_id = p_tenant and e.at >= p_start and e.at < p_end
      and e.event in ('created', 'escalated', 'resolved')
    union all
    select a.resolved_at, a.lead_id, a.type, null, (extract(epoch from a.resolved_at - a.created_at) / 3600)::float8
    from public.max_alerts a
    where a.tenant_id = p_tenant and a.resolved_at >= p_start and a.resolved_at < p_end
  ),
  facts as (  -- by local day, the lead's owner ('' for none) and type
    select (h.at at time zone p_tz)::date as day, coalesce(l.owner_id, '') collate "C" as owner_key,
           h.type::text collate "C" as type_key, h.event, h.hours
    from history h
    left join public.leads l on l.tenant_id = p_tenant and l.lead_id = h.lead_id
  ),
  grouped as (
    select f.day,
           case when grouping(f.owner_key) = 1 then '*' else f.owner_key end as owner_key,
           case when grouping(f.type_key) = 1 then '*' else f.type_key end as type_key,
           (count(*) filter (where f.event = 'created'))::integer as created,
           (count(*) filter (where f.event = 'escalated'))::integer as escalated,
           (count(*) filter (where f.event = 'resolved'))::integer as resolved,
           (count(f.hours))::integer as resolutions,
           (count(*) filter (where f.hours <= 24))::integer as within_24h,
           coalesce(array_agg(f.hours order by f.hours) filter (where f.hours is not null), '{}') as hours
    from facts f
    group by grouping sets ((f.day, f.owner_key, f.type_key), (f.day, f.owner_key), (f.day, f.type_key), (f.day))
  )
  select g.day, g.owner_key, g.type_key, g.created, g.escalated, g.resolved, g.resolutions, g.within_24h,
         array(select width_bucket(edge, g.hours) from unnest(public.alert_rollup_edges()) with ordinality x(edge, b)
               order by x.b),
         g.hours
  from grouped g
$$;
grant execute on function public.alert_rollup_rows(text, text, timestamptz, timestamptz) to authenticated, service_role;

/**
 * Drop the summaries a rewrite of history made wrong: those of the days (in every time zone
 * summarised) holding one of these moments. Owner-run maintenance and triggers only.
 */
create or replace function public.forget_alert_rollups(p_tenant text, p_moments timestamptz[]) returns void
language sql
security definer
set search_path = ''
as $$
  delete from public.alert_day_rollups r
  using (select distinct z.tz, (m at time zone z.tz)::date as day
         from (select distinct r2.tz from public.alert_day_rollups r2 where r2.tenant_id = p_tenant) z
         cross join unnest(p_moments) m) d
  where r.tenant_id = p_tenant and r.tz = d.tz and r.day = d.day
$$;

/**
 * Summarise the days `p_from`..`p_to` in `p_tz` up to 5 minutes ago (what was written before has
 * committed): the closed days whole, once; the open day (today) so far, folding in what happened
 * since its last fold when that is more than 10 minutes old. First drops the summaries an alert
 * reopened since the last check made wrong. Runs as the owner (it sees every lead, so the
 * summaries serve every caller); a user may only summarise their own tenant. Answers the moment up
 * to which the range is summarised: the caller computes the rest live.
 */
create or replace function public.summarise_alert_days(p_tenant text, p_from date, p_to date, p_tz text default 'UTC')
returns timestamptz
language plpgsql
security definer  -- writes summaries, which no caller writes directly
set search_path = ''
as $$
declare
  v_fold_day date;
  v_cover timestamptz := now() - interval '5 minutes';
  v_open  date := (v_cover at time zone p_tz)::date;
  v_start timestamptz := p_from::timestamp at time zone p_tz;
  v_end   timestamptz := (p_to + 1)::timestamp at time zone p_tz;
  v_mark  timestamptz;
  v_days  date[];
  v_moments timestamptz[];
  v_until timestamptz;
begin
  if not public.sees_all_tenants() and p_tenant is distinct from public.current_tenant() then
    return v_start;  -- someone else's tenant: row-level security shows them nothing anyway
  end if;

  -- Alerts reopened since the last check: the day of their earlier resolution changes.
  select m.reopens_seen into v_mark from public.alert_rollup_marks m where m.tenant_id = p_tenant;
  if v_mark is not null then
    select array_agg(distinct r.at) into v_moments
    from public.alert_events o
    join public.alert_events r on r.tenant_id = o.tenant_id and r.lead_id = o.lead_id and r.alert_id = o.alert_id
                              and r.event = 'resolved' and r.at < o.at
    where o.tenant_id = p_tenant and o.at >= v_mark - interval '1 hour' and o.event = 'reopened';
    if v_moments is not null then
      perform public.forget_alert_rollups(p_tenant, v_moments);
    end if;
  end if;
  if v_mark is null or v_mark < now() - interval '5 minutes' then
    insert into public.alert_rollup_marks as m (tenant_id, reopens_seen) values (p_tenant, now())
    on conflict (tenant_id) do update set reopens_seen = excluded.reopens_seen;
  end if;

  for v_pass in 1..2 loop  -- look without the lock; when there is work, take it and look again
    -- Days never summarised.
    select array_agg(d.day::date order by d.day) into v_days
    from generate_series(p_from::timestamp, least(p_to, v_open)::timestamp, interval '1 day') d(day)
    where not exists (select from public.alert_day_rollups r
                      where r.tenant_id = p_tenant and r.tz = p_tz and r.day = d.day::date
                        and r.owner_key = '*' and r.type_key = '*');
    -- Days summarised in part: the open day's last fold is over 10 minutes old, or that day has closed.
    select r.day, r.until into v_fold_day, v_until
    from public.alert_day_rollups r
    where r.tenant_id = p_tenant and r.tz = p_tz and r.day between p_from and least(p_to, v_open)
      and r.owner_key = '*' and r.type_key = '*' and r.until is not null
      and (r.day < v_open or r.until < v_cover - interval '10 minutes')
    order by r.day limit 1;
    exit when v_days is null and v_fold_day is null;
    if v_pass = 1 then
      perform pg_advisory_xact_lock(hashtextextended('alert_day_rollups' || p_tenant || E'\n' || p_tz, 0));
    end if;
  end loop;

  if v_days is not null then
    with s as materialized (
      select * from public.alert_rollup_rows(p_tenant, p_tz, v_days[1]::timestamp at time zone p_tz,
                                             least(v_cover, (v_days[cardinality(v_days)] + 1)::timestamp at time zone p_tz)) s
      where s.day = any (v_days)
    )
    insert into public.alert_day_rollups as r (tenant_id, tz, day, owner_key, type_key, created, escalated, resolved,
                                               resolutions, within_24h, cum, hours, until)
    select p_tenant, p_tz, s.day, s.owner_key, s.type_key, s.created, s.escalated, s.resolved,
           s.resolutions, s.within_24h, s.cum, s.hours, case when s.day >= v_open then v_cover end
    from s
    union all  -- quiet days: the marker row, with zeros
    select p_tenant, p_tz, d, '*', '*', 0, 0, 0, 0, 0, array_fill(0, array[cardinality(public.alert_rollup_edges())]),
           '{}', case when d >= v_open then v_cover end
    from unnest(v_days) d
    where not exists (select from s where s.day = d);
  end if;

  while v_fold_day is not null loop
    -- Fold what happened since `v_until` into the day's rows, up to its end or 5 minutes ago.
    insert into public.alert_day_rollups as r (tenant_id, tz, day, owner_key, type_key, created, escalated, resolved,
                                               resolutions, within_24h, cum, hours)
    select p_tenant, p_tz, s.day, s.owner_key, s.type_key, s.created, s.escalated, s.resolved,
           s.resolutions, s.within_24h, s.cum, s.hours
    from public.alert_rollup_rows(p_tenant, p_tz, v_until,
                                  least(v_cover, (v_fold_day + 1)::timestamp at time zone p_tz)) s
    where s.day = v_fold_day
    on conflict (tenant_id, tz, day, owner_key, type_key) do update
    set created = r.created + excluded.created, escalated = r.escalated + excluded.escalated,
        resolved = r.resolved + excluded.resolved, resolutions = r.resolutions + excluded.resolutions,
        within_24h = r.within_24h + excluded.within_24h,
        cum = (select array_agg(a + b order by i) from unnest(r.cum, excluded.cum) with ordinality u(a, b, i)),
        hours = (select coalesce(array_agg(h order by h), '{}') from unnest(r.hours || excluded.hours) h),
        built_at = now();
    update public.alert_day_rollups r
    set until = case when v_fold_day < v_open then null else v_cover end
    where r.tenant_id = p_tenant and r.tz = p_tz and r.day = v_fold_day and r.owner_key = '*' and r.type_key = '*';
    select r.day, r.until into v_fold_day, v_until
    from public.alert_day_rollups r
    where r.tenant_id = p_tenant and r.tz = p_tz and r.day between p_from and least(p_to, v_open)
      and r.owner_key = '*' and r.type_key = '*' and r.until is not null
      and (r.day < v_open or r.until < v_cover - interval '10 minutes')
    order by r.day limit 1;
  end loop;

  -- Summarised: every day before today's; today up to its last fold.
  return greatest(v_start, least(v_end, coalesce(
    (select r.until from public.alert_day_rollups r
     where r.tenant_id = p_tenant and r.tz = p_tz and r.day = v_open and p_to >= v_open and p_from <= v_open
       and r.owner_key = '*' and r.type_key = '*'),
    least(p_to + 1, greatest(p_from, v_open))::timestamp at time zone p_tz)));
end
$$;
grant execute on function public.summarise_alert_days(text, date, date, text) to authenticated, service_role;

/**
 * The nightly summary: for every tenant and time zone already summarised, the days closed since.
 * Called by the scheduled retention job (lazily done on read otherwise). Service only.
 */
create or replace function public.summarise_recent_alert_days(p_tenant text default null) returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_pair record;
  v_count integer := 0;
begin
  if not public.is_trusted_caller() then
    perform public.raise_error('LW403', 'summaries are made by the service');
  end if;
  for v_pair in
    select r.tenant_id, r.tz, max(r.day) as last_day
    from public.alert_day_rollups r
    where (p_tenant is null or r.tenant_id = p_tenant) and r.owner_key = '*' and r.type_key = '*'
    group by r.tenant_id, r.tz
  loop
    perform public.summarise_alert_days(v_pair.tenant_id, v_pair.last_day,
                                        ((now() - interval '5 minutes') at time zone v_pair.tz)::date, v_pair.tz);
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;
grant execute on function public.summarise_recent_alert_days(text) to service_role;
