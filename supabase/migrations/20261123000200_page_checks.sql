-- Page positions checked in SQL too: a cursor or limit that leadwatch did not issue is refused
-- (LW422 naming it) before any cast in a query can fail on it. The two listings are redefined
-- only to call the check first; their bodies are unchanged.

-- Functions ---------------------------------------------------------------------------------------

/**
 * Refuse a page request leadwatch would not make: a limit outside 1..1000 (LW422 `limit`), or a
 * cursor that is not an object of exactly `p_keys` with values of their types — `r` a severity
 * rank 1..3, `c` and `o` times, `i` a UUID in canonical form (LW422 `cursor`).
 */
create function public.check_page(p_limit integer, p_cursor jsonb, p_keys text[]) returns void
language plpgsql stable
set search_path = ''
as $$
begin
  if p_limit is null or p_limit not between 1 and 1000 then
    perform public.raise_error('LW422', 'limit must be between 1 and 1000', 'limit');
  end if;
  if p_cursor is null then
    return;
  end if;
  if jsonb_typeof(p_cursor) is distinct from 'object'
     or (select array_agg(k order by k) from jsonb_object_keys(p_cursor) k)
        is distinct from (select array_agg(k order by k) from unnest(p_keys) k)
     or (p_cursor ? 'r' and (p_cursor ->> 'r') not in ('1', '2', '3'))
     or (p_cursor ? 'i' and (jsonb_typeof(p_cursor -> 'i') <> 'string'
                             or (p_cursor ->> 'i') !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'))
     or exists (select from unnest(array['c', 'o']) k where p_cursor ? k and jsonb_typeof(p_cursor -> k) <> 'string')
  then
    perform public.raise_error('LW422', 'invalid cursor', 'cursor');
  end if;
  begin  -- a time's form is the one thing a pattern cannot settle: cast it here, where failing is ours to name
    perform (p_cursor ->> k)::timestamptz from unnest(array['c', 'o']) k where p_cursor ? k;
  exception when others then
    perform public.raise_error('LW422', 'invalid cursor', 'cursor');
  end;
end
$$;
grant execute on function public.check_page(integer, jsonb, text[]) to authenticated, service_role;

/**
 * One page of a tenant's active alerts in the dashboard's order (high, med, low, then newest),
 * with the stats of all its active alerts, in one call. `p_cursor` is the `next_cursor` of the
 * previous page. Runs as the caller: a user sees (and counts) only what row-level security shows them.
 */
create or replace function public.list_active_alerts(
  p_tenant   text,
  p_limit    integer default 50,
  p_cursor   jsonb default null,
  p_severity text default null,
  p_type     text default null,
  p_lead_id  text default null
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
                  'PreferredChannel', coalesce(sum(c.n) filter (where c.type = 'PreferredChannel'), 0)))
              from counted c),
    'alerts', coalesce((select jsonb_agg(public.alert_json(p.alert, p.name, p.email) order by p.n)
                        from page p where p.n <= p_limit), '[]'),
    'next_cursor', (select jsonb_build_object('r', (p.alert).severity_rank, 'c', (p.alert).created_at, 'i', (p.alert).id)
                    from page p
                    where p.n = p_limit and exists (select from page q where q.n > p_limit)))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.list_active_alerts(text, integer, jsonb, text, text, text) to authenticated, service_role;

/** A lead's timeline, newest first (by when it happened), one page at a time. */
create or replace function public.list_lead_activities(
  p_tenant  text,
  p_lead_id text,
  p_limit   integer default 50,
  p_cursor  jsonb default null
) returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_result jsonb;
begin
  perform public.check_page(p_limit, p_cursor, array['o', 'i']);
  if not exists (select from public.lead_state s where s.tenant_id = p_tenant and s.lead_id = p_lead_id)
     and not exists (select from public.leads l where l.tenant_id = p_tenant and l.lead_id = p_lead_id) then
    perform public.raise_error('LW404', 'lead not found', 'leadId');
  end if;

  with page as (
    select a, row_number() over (order by a.occurred_at desc, a.id desc) as n
    from public.lead_activities a
    where a.tenant_id = p_tenant and a.lead_id = p_lead_id
      and (p_cursor is null
           or (a.occurred_at, a.id) < ((p_cursor ->> 'o')::timestamptz, (p_cursor ->> 'i')::uuid))
    order by a.occurred_at desc, a.id desc
    limit p_limit + 1
  )
  select jsonb_build_object(
    'activities', coalesce((select jsonb_agg(public.activity_json(p.a) order by p.n) from page p where p.n <= p_limit), '[]'),
    'next_cursor', (select jsonb_build_object('o', (p.a).occurred_at, 'i', (p.a).id)
                    from page p where p.n = p_limit and exists (select from page q where q.n > p_limit)))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.list_lead_activities(text, text, integer, jsonb) to authenticated, service_role;
