-- Where the alert desk (20261123000300..330) meets what came before it: page positions checked in
-- SQL too for the listings it added or redefined after 20261123000200_page_checks (the active list,
-- now with its `p_state`, and a lead's alerts call public.check_page first; bodies otherwise as in
-- 20261123000310_alert_desk), and the sweep it wraps sized for a 1 GB instance like the statement
-- it calls (20261123000100_grants).

-- Functions ---------------------------------------------------------------------------------------

/**
 * One page of a tenant's active (or, with `p_state` 'snoozed', snoozed) alerts in the dashboard's
 * order (high, med, low, then newest), with the stats of all its active alerts and how many are
 * snoozed, in one call. `p_cursor` is the `next_cursor` of the previous page. Runs as the caller:
 * a user sees (and counts) only what row-level security shows them.
 */
create or replace function public.list_active_alerts(
  p_tenant   text,
  p_limit    integer default 50,
  p_cursor   jsonb default null,
  p_severity text default null,
  p_type     text default null,
  p_lead_id  text default null,
  p_state    text default 'active'
) returns jsonb
language plpgsql stable
set search_path = ''
set plan_cache_mode = force_custom_plan  -- plan each page with its real filters and cursor
as $$
declare
  v_result jsonb;
begin
  perform public.check_page(p_limit, p_cursor, array['r', 'c', 'i']);
  -- The active_alerts view's order, read from idx_max_alerts_active_order and stopped after one page.
  with page as (
    select x.alert, l.name, l.email,
           row_number() over (order by (x.alert).severity_rank, (x.alert).created_at desc, (x.alert).id desc) as n
    from (
      select a as alert
      from public.max_alerts a
      where a.tenant_id = p_tenant and a.resolved_at is null
        and (a.snoozed_until is not null) = (p_state = 'snoozed')
        and (p_severity is null or a.severity = p_severity)
        and (p_type is null or a.type = p_type)
        and (p_lead_id is null or a.lead_id = p_lead_id)
        and (p_cursor is null
             or a.severity_rank > (p_cursor ->> 'r')::smallint
             or (a.severity_rank = (p_cursor ->> 'r')::smallint
                 and (a.created_at, a.id) < ((p_cursor ->> 'c')::timestamptz, (p_cursor ->> 'i')::uuid)))
      order by a.severity_rank, a.created_at desc, a.id desc
      limit p_limit + 1
    ) x
    left join public.leads l on l.tenant_id = (x.alert).tenant_id and l.lead_id = (x.alert).lead_id
  ),
  -- Staff read the maintained counts; an agent counts the (few) alerts row-level security shows them.
  counted as (
    select k.severity, k.type, k.active as n
    from public.alert_counts k
    where k.tenant_id = p_tenant and (public.sees_all_tenants() or public.sees_whole_tenant())
    union all
    select a.severity, a.type, count(*)
    from public.max_alerts a
    where a.tenant_id = p_tenant and a.resolved_at is null
      and not (public.sees_all_tenants() or public.sees_whole_tenant())
    group by a.severity, a.type
  ),
  -- The counts include snoozed alerts (they are unresolved): take them out of the active stats.
  snoozed as (
    select a.severity, a.type, count(*) as n
    from public.max_alerts a
    where a.tenant_id = p_tenant and a.resolved_at is null and a.snoozed_until is not null
    group by a.severity, a.type
  ),
  active as (
    select c.severity, c.type, c.n from counted c
    union all
    select s.severity, s.type, -s.n from snoozed s
  )
  select jsonb_build_object(
    'stats', (select jsonb_build_object(
                'total', coalesce(sum(c.n), 0),
                'by_severity', jsonb_build_object(
                  'high', coalesce(sum(c.n) filter (where c.severity = 'high'), 0),
                  'med',  coalesce(sum(c.n) filter (where c.severity = 'med'), 0),
                  'low',  coalesce(sum(c.n) filter (where c.severity = 'low'), 0)),
                'by_type', jsonb_build_object(
                  'NoContact7d',      coalesce(sum(c.n) filter (where c.type = 'NoContact7d'), 0),
                  'NoReply3d',        coalesce(sum(c.n) filter (where c.type = 'NoReply3d'), 0),
                  'StaleLead30d',     coalesce(sum(c.n) filter (where c.type = 'StaleLead30d'), 0),
                  'HighValueRisk',    coalesce(sum(c.n) filter (where c.type = 'HighValueRisk'), 0),
                  'HotLead24h',       coalesce(sum(c.n) filter (where c.type = 'HotLead24h'), 0),
                  'PreferredChannel', coalesce(sum(c.n) filter (where c.type = 'PreferredChannel'), 0)),
                'snoozed', (select coalesce(sum(s.n), 0) from snoozed s))
              from active c),
    'alerts', coalesce((select jsonb_agg(public.alert_json(p.alert, p.name, p.email) order by p.n)
                        from page p where p.n <= p_limit), '[]'),
    'next_cursor', (select jsonb_build_object('r', (p.alert).severity_rank, 'c', (p.alert).created_at, 'i', (p.alert).id)
                    from page p
                    where p.n = p_limit and exists (select from page q where q.n > p_limit)))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.list_active_alerts(text, integer, jsonb, text, text, text, text)
  to authenticated, service_role;

/** Every alert of a lead, active and past, newest first, one page at a time. Runs as the caller. */
create or replace function public.list_lead_alerts(
  p_tenant  text,
  p_lead_id text,
  p_limit   integer default 50,
  p_cursor  jsonb default null
) returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_lead   public.leads;
  v_result jsonb;
begin
  perform public.check_page(p_limit, p_cursor, array['c', 'i']);
  select * into v_lead from public.leads l where l.tenant_id = p_tenant and l.lead_id = p_lead_id;
  if not found and not exists (select from public.lead_state s where s.tenant_id = p_tenant and s.lead_id = p_lead_id) then
    perform public.raise_error('LW404', 'lead not found', 'leadId');
  end if;

  with page as (
    select a, row_number() over (order by a.created_at desc, a.id desc) as n
    from public.max_alerts a
    where a.tenant_id = p_tenant and a.lead_id = p_lead_id
      and (p_cursor is null
           or (a.created_at, a.id) < ((p_cursor ->> 'c')::timestamptz, (p_cursor ->> 'i')::uuid))
    order by a.created_at desc, a.id desc
    limit p_limit + 1
  )
  select jsonb_build_object(
    'alerts', coalesce((select jsonb_agg(public.alert_json(p.a, v_lead.name, v_lead.email) order by p.n)
                        from page p where p.n <= p_limit), '[]'),
    'next_cursor', (select jsonb_build_object('c', (p.a).created_at, 'i', (p.a).id)
                    from page p where p.n = p_limit and exists (select from page q where q.n > p_limit)))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.list_lead_alerts(text, text, integer, jsonb) to authenticated, service_role;

alter function public.sweep_alerts(text, timestamptz) set work_mem = '16MB';
