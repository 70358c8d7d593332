-- Keys that lead with the tenant (issue 14, item 5). When one PostgreSQL is no longer enough, the
-- next step is a distributed PostgreSQL sharded by tenant (Citus): a distributed table's primary
-- key and unique constraints must include its distribution column, and a query that names the
-- tenant goes to one shard. Every primary key and unique constraint here now leads with tenant_id
-- (tests/test_keys.py reads the catalog and keeps it so), and the functions that found a row by
-- its id alone now name its tenant too, so that they still reach it through the key's index.
-- The deliverers' outcomes (record_webhook_attempts, record_member_pushes) name only the claimed
-- row's id: a plain index on id serves them until the deliverers send the tenant back.

-- Tables ------------------------------------------------------------------------------------------

alter table public.lead_activities
  drop constraint lead_activities_pkey,
  add constraint lead_activities_pkey primary key (tenant_id, id);

alter table public.max_alerts
  drop constraint max_alerts_pkey,
  add constraint max_alerts_pkey primary key (tenant_id, id);

alter table public.alert_events
  drop constraint alert_events_pkey,
  add constraint alert_events_pkey primary key (tenant_id, id);

alter table public.greenapi_rejected
  drop constraint greenapi_rejected_pkey,
  add constraint greenapi_rejected_pkey primary key (tenant_id, id);

alter table public.webhook_deliveries
  drop constraint webhook_deliveries_endpoint_fkey,
  drop constraint webhook_deliveries_once_per_event,
  drop constraint webhook_deliveries_pkey;
alter table public.webhook_endpoints
  drop constraint webhook_endpoints_pkey,
  add constraint webhook_endpoints_pkey primary key (tenant_id, id);
alter table public.webhook_deliveries
  add constraint webhook_deliveries_pkey primary key (tenant_id, id),
  add constraint webhook_deliveries_once_per_event unique (tenant_id, event_id, endpoint_id),
  add constraint webhook_deliveries_endpoint_fkey foreign key (tenant_id, endpoint_id)
    references public.webhook_endpoints (tenant_id, id) on delete cascade;
-- The deliverer records an attempt's outcome by the delivery's id.
create index webhook_deliveries_id on public.webhook_deliveries (id);

alter table public.member_pushes
  drop constraint member_pushes_once_per_event,
  drop constraint member_pushes_pkey,
  add constraint member_pushes_pkey primary key (tenant_id, id),
  add constraint member_pushes_once_per_event unique (tenant_id, event_id, user_id);
-- The pusher records a push's outcome by its id.
create index member_pushes_id on public.member_pushes (id);

-- Functions ---------------------------------------------------------------------------------------
-- The same bodies as their latest migrations (20261122000700, 20261122000900, 20261123000310,
-- 20261123000330, 20261123000600, 20261123000620), each lookup by id naming the row's tenant.

CREATE OR REPLACE FUNCTION public.resolve_alert(p_tenant text, p_alert_id uuid, p_actor text DEFAULT 'user_manual'::text)
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

CREATE OR REPLACE FUNCTION public.set_activity_status(p_tenant text, p_channel text, p_external_id text, p_status text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  v_old      public.lead_activities;
  v_new      public.lead_activities;
  v_reopened jsonb := '[]';
begin
  perform public.assert_acts_in(p_tenant, '{}');
  select * into v_old from public.lead_activities a
  where a.tenant_id = p_tenant and a.channel = p_channel and a.external_id = p_external_id
  for update;
  if not found then
    return jsonb_build_object('found', false);
  end if;
  if public.status_rank(p_status) < public.status_rank(v_old.status) then
    return jsonb_build_object('found', true, 'activity', public.activity_json(v_old), 'reopened', v_reopened);
  end if;

  update public.lead_activities a set status = p_status where a.tenant_id = v_old.tenant_id and a.id = v_old.id returning * into v_new;
  if public.counts_as_contact(v_old.status) and not public.counts_as_contact(p_status) then
    perform from public.lead_state s where s.tenant_id = p_tenant and s.lead_id = v_old.lead_id for update;
    perform public.refresh_lead_state(p_tenant, v_old.lead_id);
    with reopened as (
      update public.max_alerts a
      set resolved_at = null, resolved_by = null, resolution = null, resolved_by_activity = null
      where a.resolved_by_activity = v_old.id
        and not exists (select from public.max_alerts b
                        where b.tenant_id = a.tenant_id and b.lead_id = a.lead_id and b.type = a.type
                          and b.resolved_at is null)
      returning a.type
    )
    select coalesce(jsonb_agg(r.type order by r.type), '[]') into v_reopened from reopened r;
  end if;
  return jsonb_build_object('found', true, 'activity', public.activity_json(v_new), 'reopened', v_reopened);
end
$function$
;

CREATE OR REPLACE FUNCTION public.act_on_alerts(p_tenant text, p_action text, p_ids jsonb, p_until timestamp with time zone DEFAULT NULL::timestamp with time zone, p_actor text DEFAULT 'user_manual'::text)
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

CREATE OR REPLACE FUNCTION public.snooze_alert(p_tenant text, p_alert_id uuid, p_until timestamp with time zone, p_actor text DEFAULT 'user_manual'::text)
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

CREATE OR REPLACE FUNCTION public.unsnooze_alert(p_tenant text, p_alert_id uuid, p_actor text DEFAULT 'user_manual'::text)
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

CREATE OR REPLACE FUNCTION public.wake_snoozed_alerts(p_tenant text, p_now timestamp with time zone)
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

CREATE OR REPLACE FUNCTION public.mark_overdue_alerts(p_tenant text, p_now timestamp with time zone)
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
  marked as (
    update public.max_alerts a
    set overdue_at = p_now
    from candidates c
    cross join lateral (select x.overdue_after from public.rules_for(c.tenant_id) x where x.type = c.type) r
    where a.tenant_id = c.tenant_id and a.id = c.id and c.high_since <= p_now - r.overdue_after
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

CREATE OR REPLACE FUNCTION public.apply_retention(p_tenant text DEFAULT NULL::text, p_batch integer DEFAULT 5000, p_now timestamp with time zone DEFAULT now())
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  v_activities integer;
  v_alerts     integer;
  v_events     integer;
begin
  if not public.is_trusted_caller() then
    perform public.raise_error('LW403', 'retention is run by the service');
  end if;
  if p_batch is null or p_batch not between 1 and 50000 then
    perform public.raise_error('LW422', 'batch must be between 1 and 50000', 'batch');
  end if;
  perform set_config('leadwatch.history_maintenance', 'on', true);

  -- Activities, by when they occurred (no order: the scan stops at the batch's last row).
  with doomed as (
    select a.tenant_id, a.id
    from public.lead_activities a
    cross join lateral (select r.activities_after from public.retention_policies r
                        where r.tenant_id in (a.tenant_id, '*')
                        order by r.tenant_id = '*' limit 1) r
    where a.occurred_at < p_now - r.activities_after
      and (p_tenant is null or a.tenant_id = p_tenant)
      and (select count(*)
           from (select from public.lead_activities y
                 where y.tenant_id = a.tenant_id and y.lead_id = a.lead_id and y.direction = a.direction
                   and public.counts_as_contact(y.status) and (y.occurred_at, y.id) > (a.occurred_at, a.id)
                 limit case a.direction when 'in' then 5 else 2 end) newer)
          = case a.direction when 'in' then 5 else 2 end
    limit p_batch
  ),
  removed as (
    delete from public.lead_activities a using doomed d where a.tenant_id = d.tenant_id and a.id = d.id returning 1
  )
  select count(*) into v_activities from removed;

  -- Resolved alerts and their history.
  with doomed as (
    select a.id, a.tenant_id, a.lead_id
    from public.max_alerts a
    cross join lateral (select r.resolved_alerts_after from public.retention_policies r
                        where r.tenant_id in (a.tenant_id, '*')
                        order by r.tenant_id = '*' limit 1) r
    where a.resolved_at < p_now - r.resolved_alerts_after
      and (p_tenant is null or a.tenant_id = p_tenant)
      and (a.cycle_started_at is null
           or exists (select from public.lead_state s
                      where s.tenant_id = a.tenant_id and s.lead_id = a.lead_id
                        and s.last_activity_at > a.cycle_started_at))
    limit p_batch
  ),
  events as (
    delete from public.alert_events e using doomed d
    where e.tenant_id = d.tenant_id and e.lead_id = d.lead_id and e.alert_id = d.id
    returning 1
  ),
  alerts as (
    delete from public.max_alerts a using doomed d where a.tenant_id = d.tenant_id and a.id = d.id returning 1
  )
  select (select count(*) from alerts), (select count(*) from events) into v_alerts, v_events;

  return jsonb_build_object('activities', v_activities, 'alerts', v_alerts, 'events', v_events,
                            'more', v_activities = p_batch or v_alerts = p_batch);
end
$function$
;

CREATE OR REPLACE FUNCTION public.enqueue_webhook_deliveries()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  if not exists (select from public.webhook_endpoints w where w.enabled) then
    return null;  -- the common case without any endpoint: no join over the new events
  end if;
  insert into public.webhook_deliveries (tenant_id, endpoint_id, event_id, event_type, payload, next_attempt_at)
  select e.tenant_id, w.id, e.id, 'alert.' || e.event,
         jsonb_build_object(
           'type', 'alert.' || e.event,
           'timestamp', e.at,
           'data', jsonb_build_object(
             'event', jsonb_build_object('id', e.id, 'event', e.event, 'severity', e.severity,
                                         'actor', e.actor, 'at', e.at),
             'alert', public.alert_json(a, l.name, l.email) || jsonb_build_object('owner_id', l.owner_id))),
         e.at
  from new_events e
  join public.webhook_endpoints w
    on w.tenant_id = e.tenant_id and w.enabled and ('alert.' || e.event) = any (w.events)
  join public.max_alerts a on a.tenant_id = e.tenant_id and a.id = e.alert_id
  left join public.leads l on l.tenant_id = a.tenant_id and l.lead_id = a.lead_id;
  return null;
end
$function$
;

CREATE OR REPLACE FUNCTION public.redeliver_webhook(p_tenant text, p_webhook_id uuid, p_delivery_id uuid)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  v_delivery public.webhook_deliveries;
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  select * into v_delivery from public.webhook_deliveries d
  where d.id = p_delivery_id and d.endpoint_id = p_webhook_id and d.tenant_id = p_tenant
  for update;
  if not found then
    perform public.raise_error('LW404', 'delivery not found', 'deliveryId');
  end if;
  if v_delivery.status = 'sending' and v_delivery.next_attempt_at > now() then
    perform public.raise_error('LW409', 'the delivery is being sent', 'deliveryId');
  end if;
  update public.webhook_deliveries d set status = 'pending', next_attempt_at = now()
  where d.tenant_id = p_tenant and d.id = p_delivery_id
  returning * into v_delivery;
  return jsonb_build_object('delivery', public.webhook_delivery_json(v_delivery));
end
$function$
;

CREATE OR REPLACE FUNCTION public.claim_webhook_deliveries(p_now timestamp with time zone DEFAULT now(), p_limit integer DEFAULT 100, p_lease_seconds integer DEFAULT 120)
 RETURNS jsonb
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
declare
  v_claimed jsonb;
begin
  with due as (
    select d.tenant_id, d.id
    from public.webhook_deliveries d
    where d.status in ('pending', 'sending') and d.next_attempt_at <= p_now
      and exists (select from public.webhook_endpoints w where w.tenant_id = d.tenant_id and w.id = d.endpoint_id and w.enabled)
    order by d.next_attempt_at
    limit p_limit
    for update of d skip locked
  ),
  claimed as (
    update public.webhook_deliveries d
    set status = 'sending', attempts = d.attempts + 1, next_attempt_at = p_now + make_interval(secs => p_lease_seconds), last_attempt_at = p_now
    from due
    where d.tenant_id = due.tenant_id and d.id = due.id
    returning d.tenant_id, d.id, d.endpoint_id, d.attempts, d.payload
  )
  select coalesce(jsonb_agg(jsonb_build_object('id', c.id, 'attempt', c.attempts, 'url', w.url,
                                               'secret', w.secret, 'payload', c.payload)), '[]')
  into v_claimed
  from claimed c
  join public.webhook_endpoints w on w.tenant_id = c.tenant_id and w.id = c.endpoint_id;
  return v_claimed;
end
$function$
;

CREATE OR REPLACE FUNCTION public.record_webhook_attempts(p_results jsonb, p_now timestamp with time zone DEFAULT now())
 RETURNS jsonb
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
declare
  v_result jsonb;
begin
  with outcome as (
    select r.id, r.attempt, r.status, left(r.error, 200) as error,
           case when r.status between 200 and 299 then 'delivered'
                when r.status = 410 or public.webhook_retry_delay(r.attempt) is null then 'failed'
                else 'pending' end as next_status
    from jsonb_to_recordset(p_results) as r (id uuid, attempt integer, status integer, error text)
  ),
  recorded as (
    update public.webhook_deliveries d
    set status = o.next_status,
        next_attempt_at = case when o.next_status = 'pending'
                               then p_now + public.webhook_retry_delay(o.attempt) else d.next_attempt_at end,
        last_status = o.status,
        last_error = o.error,
        delivered_at = case when o.next_status = 'delivered' then p_now end,
        attempt_log = d.attempt_log
                      || jsonb_build_object('attempt', o.attempt, 'at', p_now, 'status', o.status, 'error', o.error)
    from outcome o
    where d.id = o.id and d.status = 'sending' and d.attempts = o.attempt
    returning d.tenant_id, d.endpoint_id, o.status, o.next_status
  ),
  disabled as (
    update public.webhook_endpoints w
    set enabled = false, disabled_reason = 'the receiver answered 410 Gone'
    where (w.tenant_id, w.id) in (select r.tenant_id, r.endpoint_id from recorded r where r.status = 410) and w.enabled
    returning 1
  )
  select jsonb_build_object(
    'delivered', count(*) filter (where r.next_status = 'delivered'),
    'retrying', count(*) filter (where r.next_status = 'pending'),
    'failed', count(*) filter (where r.next_status = 'failed'),
    'disabled', (select count(*) from disabled))
  into v_result
  from recorded r;
  return v_result;
end
$function$
;

CREATE OR REPLACE FUNCTION public.enqueue_member_pushes()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  if not exists (select from public.team_members m where m.whatsapp) then
    return null;
  end if;
  insert into public.member_pushes (tenant_id, user_id, event_id, kind, phone, text, next_attempt_at)
  select e.tenant_id, m.user_id, e.id, k.kind, m.phone,
         case when k.kind = 'high_alert' then
                case m.locale when 'en' then 'High alert on ' else 'Alerte haute sur ' end
              else case m.locale when 'en' then 'Overdue: high alert on ' else 'En retard : alerte haute sur ' end
         end || coalesce(l.name, a.lead_id) || ' — ' || a.message,
         public.push_due_at(e.at, m.time_zone, m.quiet_start, m.quiet_end)
  from new_events e
  cross join lateral (select case when e.event = 'created' and e.severity = 'high' then 'high_alert'
                                  when e.event = 'overdue' then 'overdue' end as kind) k
  join public.max_alerts a on a.tenant_id = e.tenant_id and a.id = e.alert_id
  left join public.leads l on l.tenant_id = a.tenant_id and l.lead_id = a.lead_id
  join public.team_members m
    on m.tenant_id = e.tenant_id and m.whatsapp and k.kind = any (m.notifications)
   and ((k.kind = 'high_alert' and m.user_id = l.owner_id) or (k.kind = 'overdue' and m.role = 'manager'))
  where k.kind is not null;
  return null;
end
$function$
;

CREATE OR REPLACE FUNCTION public.claim_member_pushes(p_now timestamp with time zone DEFAULT now(), p_limit integer DEFAULT 100, p_lease_seconds integer DEFAULT 120)
 RETURNS jsonb
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
declare
  v_claimed jsonb;
begin
  with due as (
    select p.tenant_id, p.id from public.member_pushes p
    where p.status in ('pending', 'sending') and p.next_attempt_at <= p_now
    order by p.next_attempt_at
    limit p_limit
    for update skip locked
  ),
  claimed as (
    update public.member_pushes p
    set status = 'sending', attempts = p.attempts + 1, next_attempt_at = p_now + make_interval(secs => p_lease_seconds)
    from due where p.tenant_id = due.tenant_id and p.id = due.id
    returning p.id, p.attempts, p.tenant_id, p.phone, p.text
  )
  select coalesce(jsonb_agg(jsonb_build_object('id', c.id, 'attempt', c.attempts, 'tenant_id', c.tenant_id,
                                               'phone', c.phone, 'text', c.text)), '[]')
  into v_claimed from claimed c;
  return v_claimed;
end
$function$
;
