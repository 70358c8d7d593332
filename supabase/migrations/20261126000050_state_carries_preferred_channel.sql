-- The lead's state carries the directory's preferred channel. PreferredChannel falls back on it
-- when the lead's last 5 inbound name no channel, and ingest read it from `leads`: one more random
-- index and heap page per activity, on a table nothing else at ingest touches. Measured at 1M leads
-- (a loop of log_activity calls inside one transaction, so no commit or client in the figure):
-- 372 us a call with that read, 310 us without, while those pages were not cached; no difference
-- once they were. `upsert_leads`, the one way the directory changes, keeps the copy in step, as it
-- does `high_value`; the state row is read (and locked) anyway. Lists read it too
-- (20261126000100). Behaviour unchanged: tests/test_ingest_rules.py (the directory's channel, and a
-- later change of it); tests/test_plans.py checks that no page of leads is read.

-- Tables ------------------------------------------------------------------------------------------

alter table public.lead_state add column preferred_channel public.channel;
comment on column public.lead_state.preferred_channel is
  'The directory''s preferred channel (leads.preferred_channel), kept in step by upsert_leads: what PreferredChannel falls back on.';

update public.lead_state s set preferred_channel = l.preferred_channel
from public.leads l
where l.tenant_id = s.tenant_id and l.lead_id = s.lead_id and l.preferred_channel is not null;

-- Functions ---------------------------------------------------------------------------------------

/**
 * Add or update leads (a JSON array of {lead_id, name, email, phone, owner_id, value, currency,
 * preferred_channel}). A field left out or null keeps its stored value. A new lead starts its
 * silence clock now; a lead whose value crosses the tenant's HighValueRisk threshold starts (or
 * stops) being watched for it. A lead given the phone of a provisional lead (an unknown WhatsApp
 * number) takes it over, with its activities and alerts; the phone of another real lead is a
 * conflict. Users: admins and managers of the tenant only.
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
  v_result     jsonb;
  v_merge      record;
  v_merged     text[] := '{}';
begin
  perform public.assert_acts_in(p_tenant, array['admin', 'manager']);

  for v_merge in
    select i.lead_id as into_id, l.lead_id as from_id
    from jsonb_to_recordset(p_leads) as i (lead_id text, phone text)
    join public.leads l on l.tenant_id = p_tenant and l.phone = i.phone and l.provisional and l.lead_id <> i.lead_id
  loop
    perform public.merge_lead(p_tenant, v_merge.from_id, v_merge.into_id);
    v_merged := v_merged || v_merge.into_id;
  end loop;

  select * into v_high_value from public.rules_for(p_tenant) r where r.type = 'HighValueRisk' and r.enabled;
  select t.no_contact, t.stale into v_no_contact, v_stale from public.rule_thresholds(p_tenant) t;

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
    select p_tenant, u.lead_id, now(), u.high_value, u.preferred_channel, now() + v_no_contact, now() + v_stale,
           case when u.high_value then now() + v_high_value.threshold end
    from upserted u
    on conflict (tenant_id, lead_id) do update set
      high_value = excluded.high_value,
      preferred_channel = excluded.preferred_channel,
      high_value_due_at = case
        when not excluded.high_value then null
        when s.high_value then s.high_value_due_at
        else coalesce(s.last_activity_at, s.entered_at) + v_high_value.threshold
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
  when unique_violation then
    perform public.raise_error('LW409', 'phone is already used by another lead of this tenant', 'phone');
end
$$;

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
  v_types    text[] := '{}';
  v_open     text[];            -- the lead's active alert types
  v_created  text[] := '{}';
  v_resolved jsonb := '[]';
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
    select * into v_rules from public.rules_at_ingest(p_tenant);

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
      v_new.no_contact_due_at := v_new.last_activity_at + v_rules.no_contact;
      v_new.stale_due_at := v_new.last_activity_at + v_rules.stale;
      v_new.high_value_due_at := case when v_new.high_value then v_new.last_activity_at + v_rules.high_value end;
    end if;

    -- Anything after our last outbound answers NoReply3d: a reply ends it, a new message restarts it.
    if v_at > coalesce(v_old.last_outbound_at, '-infinity') then
      v_types := v_types || array['NoReply3d'];
      v_new.no_reply_due_at := case
        when v_new.last_outbound_at > coalesce(v_new.last_inbound_at, '-infinity')
        then v_new.last_outbound_at + v_rules.no_reply
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
