-- Alerts: the living alerts, their append-only history and counts, the rules' defaults, and the
-- desk (list, resolve, snooze, act in bulk, overdue).

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Tables ------------------------------------------------------------------------------------------

create table public.alert_rules (
  tenant_id          text not null default '*',   -- '*' holds the defaults; a tenant's own row replaces them
  type               public.alert_type not null,
  enabled            boolean not null default true,
  threshold          interval,                    -- raised once the condition has held this long; PreferredChannel
                                                  -- needs no duration (when set, it bounds how old an inbound it counts)
  severity           public.severity not null,
  escalate_after     interval,                    -- escalated in place once it has held this long (null: never)
  escalated_severity public.severity,
  min_value          numeric(14, 2),              -- HighValueRisk: lead value from which the rule applies
  currency           text,                        -- ... in this currency
  supersedes         public.alert_type,           -- raising this resolves that (StaleLead30d over NoContact7d)
  locale             text not null default 'fr',  -- 'fr' or 'en': language of messages and labels
  messages           jsonb not null,              -- {"fr": "... {days} ...", "en": "..."}
  action             jsonb not null,              -- {"label": {"fr", "en"}, "action": "send_whatsapp", "params": {...},
                                                  --  "text": {"fr", "en"}: the WhatsApp message it sends, {name} filled in}
  min_count          smallint,                    -- HotLead24h: inbound messages that make a burst;
                                                  -- PreferredChannel: how many of the last 5 inbound on one channel
  overdue_after      interval not null default '24 hours',  -- a high alert unresolved this long is overdue
  clock              text not null default 'calendar',  -- 'calendar': elapsed time; 'business': the tenant's
                                                        -- working time (supabase/schemas/45_business_hours.sql)
  constraint alert_rules_pkey primary key (tenant_id, type),
  constraint alert_rules_locale_known check (locale in ('fr', 'en')),
  constraint alert_rules_ladder_complete check ((escalate_after is null) = (escalated_severity is null)),
  constraint alert_rules_ladder_rises check (escalate_after is null or escalate_after > threshold),
  constraint alert_rules_min_count_positive check (min_count >= 1),
  constraint alert_rules_overdue_after_positive check (overdue_after > interval '0'),
  constraint alert_rules_clock_known check (clock in ('calendar', 'business'))
);

create table public.max_alerts (
  id               uuid not null default public.uuid_v7(),  -- time-ordered: inserts append to the key index
  tenant_id        text not null,
  lead_id          text not null,
  type             public.alert_type not null,
  severity         public.severity not null,
  message          text not null,
  suggested_action jsonb,
  created_at       timestamptz not null default now(),
  resolved_at      timestamptz default null,
  resolved_by      text default null,               -- 'system' for the rules, else the user's id
  severity_rank    smallint not null generated always as
                     (case severity when 'high' then 1 when 'med' then 2 else 3 end) stored,
  escalated_at     timestamptz,                     -- last time the severity rose in place
  cycle_started_at timestamptz,                     -- evidence: when the silence (or the unanswered message) began
  resolution       text,                            -- why it ended: 'activity', 'manual', 'superseded', 'rule'
  resolved_by_activity uuid,                        -- the activity that answered it (reopened if that send fails)
  channel          public.channel,                  -- PreferredChannel: the lead's channel (an outbound on it answers the alert)
  snoozed_until    timestamptz,                     -- hidden from the active list until the sweep wakes it (null: not snoozed)
  overdue_at       timestamptz,                     -- when the sweep found it high and unresolved past the tenant's delay
  constraint max_alerts_pkey primary key (tenant_id, id),  -- tenant first: every key leads with it
  constraint max_alerts_resolution_known check (resolution in ('activity', 'manual', 'superseded', 'rule'))
);

create table public.alert_events (
  id        bigint generated always as identity,
  tenant_id text not null,
  alert_id  uuid not null,
  lead_id   text not null,
  type      public.alert_type not null,
  event     text not null,
  severity  public.severity not null,   -- the severity after the event
  actor     text not null,              -- 'system' or the user's id
  at        timestamptz not null default now(),
  constraint alert_events_pkey primary key (tenant_id, id),
  constraint alert_events_event_known
    check (event in ('created', 'escalated', 'resolved', 'reopened', 'snoozed', 'unsnoozed', 'overdue'))
);

-- How many alerts are active per tenant, severity and type: the dashboard's stats without counting
-- rows. Kept by the triggers below, in the transaction that changes the alerts.
create table public.alert_counts (
  tenant_id text not null,
  severity  public.severity not null,
  type      public.alert_type not null,
  active    bigint not null default 0,
  constraint alert_counts_pkey primary key (tenant_id, severity, type)
);

-- The reference's view, extended with the lead's name and email; RLS of the caller applies. Its
-- columns are the alert's as the reference has them (the later ones are read through the functions).
create view public.active_alerts with (security_invoker = true) as
select a.id, a.tenant_id, a.lead_id, a.type, a.severity, a.message, a.suggested_action, a.created_at,
       a.resolved_at, a.resolved_by, a.severity_rank, a.escalated_at, a.cycle_started_at, a.resolution,
       a.resolved_by_activity, l.name as lead_name, l.email as lead_email
from public.max_alerts a
left join public.leads l on l.tenant_id = a.tenant_id and l.lead_id = a.lead_id
where a.resolved_at is null
order by a.severity_rank, a.created_at desc, a.id desc;

-- One active alert per tenant, lead and type (the reference's index).
create unique index idx_max_alerts_unique_active
  on public.max_alerts (tenant_id, lead_id, type) where resolved_at is null;

create index idx_max_alerts_tenant_lead on public.max_alerts (tenant_id, lead_id);

-- The dashboard's order (high, med, low, then newest) read straight from an index.
create index idx_max_alerts_active_order
  on public.max_alerts (tenant_id, severity_rank, created_at desc, id desc) where resolved_at is null;

-- A lead's history (merging a provisional lead moves it; row-level security filters by lead).
create index alert_events_tenant_lead on public.alert_events (tenant_id, lead_id);

-- Alerts answered by an activity, found again if that activity turns out not to count (a failed send).
create index idx_max_alerts_resolved_by_activity
  on public.max_alerts (resolved_by_activity) where resolved_by_activity is not null;

-- The snoozed alerts of a tenant (its `snoozed` list and count) and those the sweep must wake.
create index idx_max_alerts_snoozed
  on public.max_alerts (tenant_id, snoozed_until) where resolved_at is null and snoozed_until is not null;

-- The high alerts not yet overdue, by the time they became high.
create index idx_max_alerts_overdue_watch
  on public.max_alerts ((coalesce(escalated_at, created_at)))
  where resolved_at is null and severity_rank = 1 and overdue_at is null;

-- A tenant's history in time order: the events of a range of days read from the index alone.
create index idx_alert_events_tenant_at on public.alert_events (tenant_id, at) include (event, lead_id);

-- A tenant's reopened alerts since a moment (the summaries check them on each call) without reading
-- the other events of that time, such as a morning sweep's.
create index idx_alert_events_reopened on public.alert_events (tenant_id, at) where event = 'reopened';

-- A tenant's alerts resolved in a range of days, with what their time to resolve needs.
create index idx_max_alerts_tenant_resolved
  on public.max_alerts (tenant_id, resolved_at) include (created_at, type, lead_id)
  where resolved_at is not null;

-- A tenant's alerts in creation order (all of them, resolved included), page after page.
create index idx_max_alerts_tenant_created on public.max_alerts (tenant_id, created_at, id);

-- Grants and row-level security -------------------------------------------------------------------

-- Users read through row-level security; the service writes what the API writes. The history is
-- appended, never rewritten (and its trigger below refuses UPDATE, DELETE and TRUNCATE to everyone).
grant select on table public.alert_rules to authenticated;
grant select, insert, update, delete on table public.alert_rules to service_role;
grant select on table public.max_alerts to authenticated;
grant select, insert, update, delete on table public.max_alerts to service_role;
grant select on table public.alert_events to authenticated;
grant select, insert on table public.alert_events to service_role;
grant select on table public.alert_counts to authenticated, service_role;
grant select on table public.active_alerts to authenticated, service_role;
-- The history's ids: nobody but the owner uses the sequence (inserts go through the identity).
revoke all on sequence public.alert_events_id_seq from public, anon, authenticated, service_role;

alter table public.alert_rules enable row level security;
alter table public.max_alerts enable row level security;
alter table public.alert_events enable row level security;
alter table public.alert_counts enable row level security;

-- Triggers ----------------------------------------------------------------------------------------

/**
 * Record every escalation, resolution and reopening, and move the counts, set-based, whatever path made it.
 * No nested loop: the trigger pairs each changed alert's old and new rows, which the planner always
 * estimates at one row each (a transition table has no statistics); a nested loop over them was
 * quadratic (4 s for 6,582 alerts marked overdue by one sweep, 200,000 leads).
 */
create or replace function public.record_changed_alerts() returns trigger
language plpgsql
security definer
set search_path = ''
set enable_nestloop = off
as $$
begin
  insert into public.alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor)
  select n.tenant_id, n.id, n.lead_id, n.type, e.event, n.severity,
         case e.event when 'resolved' then n.resolved_by else 'system' end
  from new_alerts n
  join old_alerts o on o.id = n.id
  cross join lateral (select case
    when o.resolved_at is null and n.resolved_at is not null then 'resolved'
    when o.resolved_at is not null and n.resolved_at is null then 'reopened'
    when n.severity_rank < o.severity_rank then 'escalated'
  end as event) e
  where e.event is not null;

  insert into public.alert_counts as c (tenant_id, severity, type, active)
  select d.tenant_id, d.severity, d.type, sum(d.delta)
  from (select o.tenant_id, o.severity, o.type, -1 as delta from old_alerts o where o.resolved_at is null
        union all
        select n.tenant_id, n.severity, n.type, 1 from new_alerts n where n.resolved_at is null) d
  group by d.tenant_id, d.severity, d.type
  having sum(d.delta) <> 0
  order by d.tenant_id, d.severity, d.type
  on conflict (tenant_id, severity, type) do update set active = c.active + excluded.active;
  return null;
end
$$;

create trigger max_alerts_record_changed after update on public.max_alerts
  referencing old table as old_alerts new table as new_alerts
  for each statement execute function public.record_changed_alerts();

/**
 * Record every alert created, and count the active ones, set-based, whatever path created them.
 * Security definer: it writes the history and the counts, which no caller writes directly.
 */
create or replace function public.record_created_alerts() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor)
  select n.tenant_id, n.id, n.lead_id, n.type, 'created', n.severity, 'system'
  from new_alerts n;

  insert into public.alert_counts as c (tenant_id, severity, type, active)
  select n.tenant_id, n.severity, n.type, count(*)
  from new_alerts n
  where n.resolved_at is null
  group by n.tenant_id, n.severity, n.type
  order by n.tenant_id, n.severity, n.type  -- concurrent writers lock the counters in the same order
  on conflict (tenant_id, severity, type) do update set active = c.active + excluded.active;
  return null;
end
$$;

create trigger max_alerts_record_created after insert on public.max_alerts
  referencing new table as new_alerts
  for each statement execute function public.record_created_alerts();

/** Alerts are not deleted in normal operation; if they are, the counts follow. */
create or replace function public.record_deleted_alerts() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.alert_counts as c (tenant_id, severity, type, active)
  select o.tenant_id, o.severity, o.type, -count(*)
  from old_alerts o
  where o.resolved_at is null
  group by o.tenant_id, o.severity, o.type
  order by o.tenant_id, o.severity, o.type
  on conflict (tenant_id, severity, type) do update set active = c.active + excluded.active;
  return null;
end
$$;

create trigger max_alerts_record_deleted after delete on public.max_alerts
  referencing old table as old_alerts
  for each statement execute function public.record_deleted_alerts();

/**
 * alert_events is append-only: refuse UPDATE, DELETE and TRUNCATE, whoever asks (the owner too),
 * unless an owner-run maintenance function (merge_lead) has set the transaction-local
 * `leadwatch.history_maintenance` to 'on'. Privileges already keep every API role out; this
 * catches the owner's own mistakes and any grant added by hand later.
 */
create or replace function public.refuse_history_change() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if coalesce(current_setting('leadwatch.history_maintenance', true), '') <> 'on' then
    raise exception using errcode = 'LW403',
      message = format('alert_events is append-only: %s refused', tg_op),
      hint = 'history is only rewritten by owner-run maintenance functions (merge_lead)';
  end if;
  return null;
end
$$;

create trigger alert_events_append_only before update or delete or truncate on public.alert_events
  for each statement execute function public.refuse_history_change();

-- Policies ----------------------------------------------------------------------------------------

create policy "Rules are visible to their tenant's users, and the defaults to all of them" on public.alert_rules
  for select to authenticated
  using (tenant_id = '*' or (select public.sees_all_tenants()) or tenant_id = (select public.current_tenant()));

create policy "Alert counts are visible to the staff of their tenant" on public.alert_counts
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant()) and (select public.sees_whole_tenant())));

create policy "Alerts are visible to whoever may see the lead" on public.max_alerts
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant())
             and ((select public.sees_whole_tenant()) or lead_id in (select public.owned_leads()))));

create policy "Alert history is visible to whoever may see the lead" on public.alert_events
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant())
             and ((select public.sees_whole_tenant()) or lead_id in (select public.owned_leads()))));

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
grant execute on function public.alert_json(public.max_alerts, text, text) to authenticated, service_role;

/**
 * One page of a tenant's active (or, with `p_state` 'snoozed', snoozed) alerts in the dashboard's
 * order (high, med, low, then newest), with the stats of all its active alerts and how many are
 * snoozed, in one call. `p_cursor` is the `next_cursor` of the previous page. Runs as the caller:
 * a user sees (and counts) only what row-level security shows them. Each alert carries its lead's
 * phone and preferred channel (`lead_phone`, `lead_preferred_channel`): whether its action can run,
 * on which channel, and the number a call dials.
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
    select x.alert, l.name, l.email, l.phone, l.preferred_channel,
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
    'alerts', coalesce((select jsonb_agg(public.alert_json(p.alert, p.name, p.email)
                                  || jsonb_build_object('lead_phone', p.phone,
                                                        'lead_preferred_channel', p.preferred_channel)
                                  order by p.n)
                        from page p where p.n <= p_limit), '[]'),
    'next_cursor', (select jsonb_build_object('r', (p.alert).severity_rank, 'c', (p.alert).created_at, 'i', (p.alert).id)
                    from page p
                    where p.n = p_limit and exists (select from page q where q.n > p_limit)))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.list_active_alerts(text, integer, jsonb, text, text, text, text) to authenticated, service_role;

/**
 * Resolve an alert by hand. Idempotent: resolving a resolved alert answers with the first
 * resolution. The same silence does not raise that alert again; the next activity starts anew.
 * An alert the caller may not see is not found (its existence is not revealed). A user is
 * recorded by their id (`sub`), whatever `p_actor` says.
 */
create or replace function public.resolve_alert(p_tenant text, p_alert_id uuid, p_actor text DEFAULT 'user_manual'::text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
    where a.tenant_id = p_tenant and a.id = p_alert_id and a.resolved_at is null
    returning * into v_alert;

    if found then
      update public.lead_state s set
        no_contact_due_at = case when v_alert.type = 'NoContact7d' then null else s.no_contact_due_at end,
        no_reply_due_at   = case when v_alert.type = 'NoReply3d' then null else s.no_reply_due_at end,
        stale_due_at      = case when v_alert.type = 'StaleLead30d' then null else s.stale_due_at end,
        high_value_due_at = case when v_alert.type = 'HighValueRisk' then null else s.high_value_due_at end
      where s.tenant_id = p_tenant and s.lead_id = v_alert.lead_id;
    else
      select * into v_alert from public.max_alerts a where a.tenant_id = p_tenant and a.id = p_alert_id;
    end if;
  end if;

  return jsonb_build_object('alert', jsonb_build_object(
    'id', v_alert.id, 'type', v_alert.type, 'lead_id', v_alert.lead_id,
    'resolved_at', v_alert.resolved_at, 'resolved_by', v_alert.resolved_by));
end
$function$
;
grant execute on function public.resolve_alert(text, uuid, text) to authenticated, service_role;

/** The short answer about one alert that the desk's actions return. */
create or replace function public.alert_brief(p_alert public.max_alerts) returns jsonb
language sql immutable
as $$
  select jsonb_build_object('id', p_alert.id, 'type', p_alert.type, 'lead_id', p_alert.lead_id,
                            'snoozed_until', p_alert.snoozed_until, 'severity', p_alert.severity)
$$;
grant execute on function public.alert_brief(public.max_alerts) to authenticated, service_role;

/**
 * Resolve or snooze (until `p_until`, at most 30 days ahead) alerts by id, in one transaction,
 * answering for each id in order: `done`, `already_resolved`, or `not_found` (no such alert in
 * this tenant, or one the caller may not see: its existence is not revealed). The same permissions
 * as resolving one alert. A user is recorded by their id (`sub`), whatever `p_actor` says.
 */
create or replace function public.act_on_alerts(p_tenant text, p_action text, p_ids jsonb, p_until timestamp with time zone DEFAULT NULL::timestamp with time zone, p_actor text DEFAULT 'user_manual'::text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
    where p_action = 'resolve' and a.tenant_id = q.tenant_id and a.id = q.alert_id and a.resolved_at is null
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
    where p_action = 'snooze' and a.tenant_id = q.tenant_id and a.id = q.alert_id and a.resolved_at is null
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
$function$
;
grant execute on function public.act_on_alerts(text, text, jsonb, timestamptz, text) to authenticated, service_role;

/**
 * Snooze one alert until `p_until` (at most 30 days ahead): it leaves the active list until the
 * sweep wakes it. Snoozing a snoozed alert moves its time; a resolved alert is a conflict.
 */
create or replace function public.snooze_alert(p_tenant text, p_alert_id uuid, p_until timestamp with time zone, p_actor text DEFAULT 'user_manual'::text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
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
  return jsonb_build_object('alert', (select public.alert_brief(a) from public.max_alerts a
                                      where a.tenant_id = p_tenant and a.id = p_alert_id));
end
$function$
;
grant execute on function public.snooze_alert(text, uuid, timestamptz, text) to authenticated, service_role;

/** Bring a snoozed alert back to the active list now. Idempotent; a resolved alert is a conflict. */
create or replace function public.unsnooze_alert(p_tenant text, p_alert_id uuid, p_actor text DEFAULT 'user_manual'::text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
    update public.max_alerts a set snoozed_until = null where a.tenant_id = p_tenant and a.id = p_alert_id returning * into v_alert;
    insert into public.alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor)
    values (v_alert.tenant_id, v_alert.id, v_alert.lead_id, v_alert.type, 'unsnoozed', v_alert.severity, v_actor);
  end if;
  return jsonb_build_object('alert', public.alert_brief(v_alert));
end
$function$
;
grant execute on function public.unsnooze_alert(text, uuid, text) to authenticated, service_role;

/**
 * An alert and its history, oldest event first (created, escalated, snoozed, reopened, resolved...,
 * each with its actor, time and the severity after it). Runs as the caller: an alert they may not
 * see is not found.
 */
create or replace function public.alert_history(p_tenant text, p_alert_id uuid) returns jsonb
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
  v_now    constant timestamptz := now();  -- a value, not a STABLE call, in the CASE below (Citus plans it)
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
                            then v_now else a.escalated_at end
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
grant execute on function public.wake_snoozed_alerts(text, timestamptz) to service_role;

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
grant execute on function public.mark_overdue_alerts(text, timestamptz) to service_role;
