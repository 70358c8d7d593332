-- The alert desk: what a sales team does with alerts beyond resolving them — snooze one until a
-- time, act on many at once, read an alert's history and a lead's past alerts — and the overdue
-- mark the sweep puts on a high alert left unresolved too long.

-- Tables ------------------------------------------------------------------------------------------

alter table public.max_alerts
  add column snoozed_until timestamptz,  -- hidden from the active list until the sweep wakes it (null: not snoozed)
  add column overdue_at    timestamptz;  -- when the sweep found it high and unresolved past the tenant's delay

alter table public.alert_rules
  add column overdue_after interval not null default '24 hours',  -- a high alert unresolved this long is overdue
  add constraint alert_rules_overdue_after_positive check (overdue_after > interval '0');

alter table public.alert_events
  drop constraint alert_events_event_known,
  add constraint alert_events_event_known
    check (event in ('created', 'escalated', 'resolved', 'reopened', 'snoozed', 'unsnoozed', 'overdue'));

-- The snoozed alerts of a tenant (its `snoozed` list and count) and those the sweep must wake.
create index idx_max_alerts_snoozed
  on public.max_alerts (tenant_id, snoozed_until) where resolved_at is null and snoozed_until is not null;
-- The high alerts not yet overdue, by the time they became high.
create index idx_max_alerts_overdue_watch
  on public.max_alerts ((coalesce(escalated_at, created_at)))
  where resolved_at is null and severity_rank = 1 and overdue_at is null;

-- Functions ---------------------------------------------------------------------------------------

/** An alert as the API lists it (the reference's shape, with the lead's name and email, and its desk state). */
create or replace function public.alert_json(p_alert public.max_alerts, p_lead_name text, p_lead_email text)
returns jsonb
language sql immutable
as $$
  select jsonb_build_object(
    'id', p_alert.id, 'tenant_id', p_alert.tenant_id, 'lead_id', p_alert.lead_id,
    'type', p_alert.type, 'severity', p_alert.severity, 'message', p_alert.message,
    'suggested_action', p_alert.suggested_action, 'created_at', p_alert.created_at,
    'escalated_at', p_alert.escalated_at, 'resolved_at', p_alert.resolved_at,
    'resolved_by', p_alert.resolved_by, 'resolution', p_alert.resolution,
    'snoozed_until', p_alert.snoozed_until, 'overdue', p_alert.overdue_at is not null, 'overdue_at', p_alert.overdue_at,
    'lead_name', p_lead_name, 'lead_email', p_lead_email)
$$;

/** The short answer about one alert that the desk's actions return. */
create function public.alert_brief(p_alert public.max_alerts) returns jsonb
language sql immutable
as $$
  select jsonb_build_object('id', p_alert.id, 'type', p_alert.type, 'lead_id', p_alert.lead_id,
                            'snoozed_until', p_alert.snoozed_until, 'severity', p_alert.severity)
$$;
grant execute on function public.alert_brief(public.max_alerts) to authenticated, service_role;

drop function public.list_active_alerts(text, integer, jsonb, text, text, text);

/**
 * One page of a tenant's active (or, with `p_state` 'snoozed', snoozed) alerts in the dashboard's
 * order (high, med, low, then newest), with the stats of all its active alerts and how many are
 * snoozed, in one call. `p_cursor` is the `next_cursor` of the previous page. Runs as the caller:
 * a user sees (and counts) only what row-level security shows them.
 */
create function public.list_active_alerts(
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

/**
 * Resolve or snooze (until `p_until`, at most 30 days ahead) alerts by id, in one transaction,
 * answering for each id in order: `done`, `already_resolved`, or `not_found` (no such alert in
 * this tenant, or one the caller may not see: its existence is not revealed). The same permissions
 * as resolving one alert. A user is recorded by their id (`sub`), whatever `p_actor` says.
 */
create function public.act_on_alerts(
  p_tenant text,
  p_action text,
  p_ids    jsonb,                      -- a JSON array of alert ids
  p_until  timestamptz default null,
  p_actor  text default 'user_manual'
) returns jsonb
language plpgsql
security definer  -- moves lead_state and writes history, which users cannot write themselves
set search_path = ''
as $$
declare
  v_actor  text := case when public.is_trusted_caller() then p_actor else (select auth.jwt()) ->> 'sub' end;
  v_ids    uuid[];
  v_result jsonb;
begin
  perform public.assert_acts_in(p_tenant);
  if p_action is null or p_action not in ('resolve', 'snooze') then
    perform public.raise_error('LW422', 'action must be resolve or snooze', 'action');
  end if;
  if jsonb_typeof(p_ids) is distinct from 'array' or jsonb_array_length(p_ids) not between 1 and 500 then
    perform public.raise_error('LW422', 'ids must list 1 to 500 alert ids', 'ids');
  end if;
  if p_action = 'snooze' and (p_until is null or p_until <= now() or p_until > now() + interval '30 days 5 minutes') then
    perform public.raise_error('LW422', 'until must be in the future, at most 30 days ahead', 'until');
  end if;
  v_ids := array(select jsonb_array_elements_text(p_ids)::uuid);

  if p_action = 'resolve' then
    -- Lock the leads' states before their alerts, as resolve_alert does.
    perform from public.lead_state s
    where (s.tenant_id, s.lead_id) in (select a.tenant_id, a.lead_id from public.max_alerts a
                                       where a.id = any (v_ids) and a.tenant_id = p_tenant and a.resolved_at is null)
    order by s.lead_id
    for update;
  end if;

  with asked as (
    select i.id, i.n, a.id as alert_id, a.tenant_id, a.lead_id
    from jsonb_array_elements_text(p_ids) with ordinality as i (id, n)
    left join public.max_alerts a
      on a.id = i.id::uuid and a.tenant_id = p_tenant and public.can_see_lead(a.tenant_id, a.lead_id)
  ),
  resolved as (
    update public.max_alerts a
    set resolved_at = now(), resolved_by = v_actor, resolution = 'manual'
    from asked q
    where p_action = 'resolve' and a.id = q.alert_id and a.resolved_at is null
    returning a.id, a.tenant_id, a.lead_id, a.type
  ),
  -- A manual resolve: the same silence does not raise that alert again; the next activity starts anew.
  cleared as (
    update public.lead_state s set
      no_contact_due_at = case when r.no_contact then null else s.no_contact_due_at end,
      no_reply_due_at   = case when r.no_reply then null else s.no_reply_due_at end,
      stale_due_at      = case when r.stale then null else s.stale_due_at end,
      high_value_due_at = case when r.high_value then null else s.high_value_due_at end
    from (select d.tenant_id, d.lead_id,
                 bool_or(d.type = 'NoContact7d') as no_contact, bool_or(d.type = 'NoReply3d') as no_reply,
                 bool_or(d.type = 'StaleLead30d') as stale, bool_or(d.type = 'HighValueRisk') as high_value
          from resolved d group by d.tenant_id, d.lead_id) r
    where s.tenant_id = r.tenant_id and s.lead_id = r.lead_id
    returning 1
  ),
  snoozed as (
    update public.max_alerts a
    set snoozed_until = p_until
    from asked q
    where p_action = 'snooze' and a.id = q.alert_id and a.resolved_at is null
    returning a.*
  ),
  snooze_events as (
    insert into public.alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor)
    select s.tenant_id, s.id, s.lead_id, s.type, 'snoozed', s.severity, v_actor
    from snoozed s
    returning 1
  ),
  answered as (
    select q.id, q.n,
           case when exists (select from resolved r where r.id = q.alert_id)
                  or exists (select from snoozed s where s.id = q.alert_id) then 'done'
                when q.alert_id is not null then 'already_resolved'
                else 'not_found' end as result
    from asked q
  )
  select jsonb_build_object(
    'results', jsonb_agg(jsonb_build_object('id', a.id, 'result', a.result) order by a.n),
    'done', count(*) filter (where a.result = 'done'))
  into v_result
  from answered a;
  return v_result;
end
$$;
grant execute on function public.act_on_alerts(text, text, jsonb, timestamptz, text) to authenticated, service_role;

/**
 * Snooze one alert until `p_until` (at most 30 days ahead): it leaves the active list until the
 * sweep wakes it. Snoozing a snoozed alert moves its time; a resolved alert is a conflict.
 */
create function public.snooze_alert(p_tenant text, p_alert_id uuid, p_until timestamptz,
                                    p_actor text default 'user_manual')
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_result text;
begin
  v_result := public.act_on_alerts(p_tenant, 'snooze', jsonb_build_array(p_alert_id), p_until, p_actor)
              -> 'results' -> 0 ->> 'result';
  if v_result = 'not_found' then
    perform public.raise_error('LW404', 'alert not found', 'id');
  elsif v_result = 'already_resolved' then
    perform public.raise_error('LW409', 'the alert is resolved', 'id');
  end if;
  return jsonb_build_object('alert', (select public.alert_brief(a) from public.max_alerts a where a.id = p_alert_id));
end
$$;
grant execute on function public.snooze_alert(text, uuid, timestamptz, text) to authenticated, service_role;

/** Bring a snoozed alert back to the active list now. Idempotent; a resolved alert is a conflict. */
create function public.unsnooze_alert(p_tenant text, p_alert_id uuid, p_actor text default 'user_manual')
returns jsonb
language plpgsql
security definer  -- writes history, which users cannot write themselves
set search_path = ''
as $$
declare
  v_alert public.max_alerts;
  v_actor text := case when public.is_trusted_caller() then p_actor else (select auth.jwt()) ->> 'sub' end;
begin
  perform public.assert_acts_in(p_tenant);
  select * into v_alert from public.max_alerts a where a.id = p_alert_id and a.tenant_id = p_tenant for update;
  if not found or not public.can_see_lead(v_alert.tenant_id, v_alert.lead_id) then
    perform public.raise_error('LW404', 'alert not found', 'id');
  end if;
  if v_alert.resolved_at is not null then
    perform public.raise_error('LW409', 'the alert is resolved', 'id');
  end if;
  if v_alert.snoozed_until is not null then
    update public.max_alerts a set snoozed_until = null where a.id = p_alert_id returning * into v_alert;
    insert into public.alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor)
    values (v_alert.tenant_id, v_alert.id, v_alert.lead_id, v_alert.type, 'unsnoozed', v_alert.severity, v_actor);
  end if;
  return jsonb_build_object('alert', public.alert_brief(v_alert));
end
$$;
grant execute on function public.unsnooze_alert(text, uuid, text) to authenticated, service_role;

/**
 * An alert and its history, oldest event first (created, escalated, snoozed, reopened, resolved...,
 * each with its actor, time and the severity after it). Runs as the caller: an alert they may not
 * see is not found.
 */
create function public.alert_history(p_tenant text, p_alert_id uuid) returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_alert public.max_alerts;
  v_lead  public.leads;
begin
  select * into v_alert from public.max_alerts a where a.id = p_alert_id and a.tenant_id = p_tenant;
  if not found then
    perform public.raise_error('LW404', 'alert not found', 'id');
  end if;
  select * into v_lead from public.leads l where l.tenant_id = p_tenant and l.lead_id = v_alert.lead_id;
  return jsonb_build_object(
    'alert', public.alert_json(v_alert, v_lead.name, v_lead.email),
    'events', coalesce((select jsonb_agg(jsonb_build_object('event', e.event, 'severity', e.severity,
                                                            'actor', e.actor, 'at', e.at) order by e.id)
                        from public.alert_events e
                        where e.tenant_id = p_tenant and e.lead_id = v_alert.lead_id and e.alert_id = p_alert_id), '[]'));
end
$$;
grant execute on function public.alert_history(text, uuid) to authenticated, service_role;

/** Every alert of a lead, active and past, newest first, one page at a time. Runs as the caller. */
create function public.list_lead_alerts(
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

-- The sweep gains two steps: the alert-raising statement keeps its body under a new name.
alter function public.sweep_alerts(text, timestamptz) rename to raise_due_alerts;

/**
 * Wake the snoozed alerts whose time has come (by `p_now`): back to the active list (`reopened`)
 * with the severity their ladder gives by then (never lower) if their condition still holds, else
 * resolved (`rule`). An activity that answered one has already resolved it. Alerts another
 * transaction is changing are left for the next sweep.
 */
create function public.wake_snoozed_alerts(p_tenant text, p_now timestamptz) returns jsonb
language plpgsql
set search_path = ''
as $$
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
    select w.id, w.severity as was,
      case
        when r.enabled is not true then null
        when w.type in ('HotLead24h', 'PreferredChannel') then w.severity
        when c.since is null or p_now - c.since < r.threshold then null
        when p_now - c.since >= r.escalate_after then r.escalated_severity
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
    where a.id = j.id and j.severity is not null
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
    where a.id = j.id and j.severity is null
    returning 1
  )
  select jsonb_build_object('reopened', (select count(*) from reopen_events), 'resolved', (select count(*) from resolved))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.wake_snoozed_alerts(text, timestamptz) to service_role;

/**
 * Mark overdue, once, every high alert still unresolved (and not snoozed) past its tenant's delay
 * (`overdue_after`, default 24 h) since it became high, recording an `overdue` event for the
 * notifications to deliver. Answers how many it marked.
 */
create function public.mark_overdue_alerts(p_tenant text, p_now timestamptz) returns integer
language plpgsql
set search_path = ''
as $$
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
  marked as (
    update public.max_alerts a
    set overdue_at = p_now
    from candidates c
    cross join lateral (select x.overdue_after from public.rules_for(c.tenant_id) x where x.type = c.type) r
    where a.id = c.id and c.high_since <= p_now - r.overdue_after
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
$$;
grant execute on function public.mark_overdue_alerts(text, timestamptz) to service_role;

/**
 * The scheduled sweep, for every tenant or one: raise, escalate and supersede the time-based
 * alerts of the leads that fell due by `p_now`, wake the snoozed alerts whose time has come, and
 * mark the overdue ones. One transaction.
 */
create function public.sweep_alerts(p_tenant text default null, p_now timestamptz default now())
returns jsonb
language plpgsql
set search_path = ''
set work_mem = '16MB'  -- sized for a 1 GB instance, like raise_due_alerts (20261123000100_grants)
as $$
declare
  v_raised  jsonb := public.raise_due_alerts(p_tenant, p_now);
  v_woken   jsonb := public.wake_snoozed_alerts(p_tenant, p_now);
  v_overdue integer := public.mark_overdue_alerts(p_tenant, p_now);
begin
  return v_raised || jsonb_build_object(
    'resolved', (v_raised ->> 'resolved')::integer + (v_woken ->> 'resolved')::integer,
    'reopened', v_woken -> 'reopened',
    'overdue', v_overdue);
end
$$;
grant execute on function public.sweep_alerts(text, timestamptz) to service_role;
