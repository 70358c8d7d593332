-- Analytics: the KPIs of the alerts over a range of days (created, escalated and resolved per day,
-- resolution within 24 h, time to resolve by type and by owner, open alerts by age), computed from
-- max_alerts and alert_events as the caller may see them.

-- Indexes -----------------------------------------------------------------------------------------

-- A tenant's history in time order: the events of a range of days read from the index alone.
create index idx_alert_events_tenant_at on public.alert_events (tenant_id, at) include (event, lead_id);
-- A tenant's alerts resolved in a range of days, with what their time to resolve needs.
create index idx_max_alerts_tenant_resolved
  on public.max_alerts (tenant_id, resolved_at) include (created_at, type, lead_id)
  where resolved_at is not null;

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
create function public.alert_analytics(p_tenant text, p_from date, p_to date, p_tz text default 'UTC')
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
grant execute on function public.alert_analytics(text, date, date, text) to authenticated, service_role;
