-- Reading and resolving alerts, and reading a lead's timeline.

-- Functions ---------------------------------------------------------------------------------------

/** An active alert as the API lists it (the reference's shape, with the lead's name and email). */
create function public.alert_json(p_alert public.max_alerts, p_lead_name text, p_lead_email text) returns jsonb
language sql immutable
as $$
  select jsonb_build_object(
    'id', p_alert.id, 'tenant_id', p_alert.tenant_id, 'lead_id', p_alert.lead_id,
    'type', p_alert.type, 'severity', p_alert.severity, 'message', p_alert.message,
    'suggested_action', p_alert.suggested_action, 'created_at', p_alert.created_at,
    'escalated_at', p_alert.escalated_at, 'resolved_at', p_alert.resolved_at,
    'lead_name', p_lead_name, 'lead_email', p_lead_email)
$$;
grant execute on function public.alert_json(public.max_alerts, text, text) to authenticated, service_role;

/**
 * One page of a tenant's active alerts in the dashboard's order (high, med, low, then newest),
 * with the stats of all its active alerts, in one call. `p_cursor` is the `next_cursor` of the
 * previous page. Runs as the caller: a user sees (and counts) only what row-level security shows them.
 */
create function public.list_active_alerts(
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

/**
 * Resolve an alert by hand. Idempotent: resolving a resolved alert answers with the first
 * resolution. The same silence does not raise that alert again; the next activity starts anew.
 * An alert the caller may not see is not found (its existence is not revealed). A user is
 * recorded by their id (`sub`), whatever `p_actor` says.
 */
create function public.resolve_alert(p_tenant text, p_alert_id uuid, p_actor text default 'user_manual')
returns jsonb
language plpgsql
security definer  -- moves lead_state, which users cannot write themselves
set search_path = ''
as $$
declare
  v_alert public.max_alerts;
  v_actor text := case when public.is_trusted_caller() then p_actor else (select auth.jwt()) ->> 'sub' end;
begin
  perform public.assert_acts_in(p_tenant);
  select * into v_alert from public.max_alerts a where a.id = p_alert_id and a.tenant_id = p_tenant;
  if not found or not public.can_see_lead(v_alert.tenant_id, v_alert.lead_id) then
    perform public.raise_error('LW404', 'alert not found', 'id');
  end if;

  if v_alert.resolved_at is null then
    -- Lock the lead's state before the alert, in the sweep's order, so that the two never deadlock.
    perform from public.lead_state s where s.tenant_id = p_tenant and s.lead_id = v_alert.lead_id for update;
    update public.max_alerts a
    set resolved_at = now(), resolved_by = v_actor, resolution = 'manual'
    where a.id = p_alert_id and a.resolved_at is null
    returning * into v_alert;

    if found then
      update public.lead_state s set
        no_contact_due_at = case when v_alert.type = 'NoContact7d' then null else s.no_contact_due_at end,
        no_reply_due_at   = case when v_alert.type = 'NoReply3d' then null else s.no_reply_due_at end,
        stale_due_at      = case when v_alert.type = 'StaleLead30d' then null else s.stale_due_at end,
        high_value_due_at = case when v_alert.type = 'HighValueRisk' then null else s.high_value_due_at end
      where s.tenant_id = p_tenant and s.lead_id = v_alert.lead_id;
    else
      select * into v_alert from public.max_alerts a where a.id = p_alert_id;
    end if;
  end if;

  return jsonb_build_object('alert', jsonb_build_object(
    'id', v_alert.id, 'type', v_alert.type, 'lead_id', v_alert.lead_id,
    'resolved_at', v_alert.resolved_at, 'resolved_by', v_alert.resolved_by));
end
$$;
grant execute on function public.resolve_alert(text, uuid, text) to authenticated, service_role;

/** A lead's timeline, newest first (by when it happened), one page at a time. */
create function public.list_lead_activities(
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
