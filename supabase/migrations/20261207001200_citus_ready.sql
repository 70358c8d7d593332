-- Statements a Citus coordinator can plan too (docs/citus.md), the same behaviour on PostgreSQL:
-- * upsert_leads: a lead's `updated_at` is set from a variable taken at the start (now() is the
--   transaction's start either way): Citus refuses STABLE functions in `on conflict do update set`.
-- * forget_reowned_alert_days (the trigger on leads that forgets the summaries a change of owner
--   made wrong): reads alert_day_rollups and alert_events tenant by tenant, each read naming its
--   tenant, instead of first probing the whole of alert_day_rollups: on Citus every read stays on
--   its tenant's shard; on PostgreSQL a tenant without summaries costs one probe of their key.

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
  v_now        constant timestamptz := now();
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
      provisional = false, updated_at = v_now  -- now(): Citus takes no STABLE function here
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
grant execute on function public.upsert_leads(text, jsonb) to authenticated, service_role;

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

-- Waking snoozed alerts: the escalation time is a variable holding now() (the same value), as Citus
-- refuses a STABLE call in a CASE of a distributed write.
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
