-- Ingest reads less: the ingest-time rules read the lead's newest activities from the index alone
-- (log_activity and the batch's ingest_activities), log_activity's HotLead24h reads them only when the
-- lead's state says a burst is possible, and an activity's JSON is built inline, not by a call of its
-- own per answer. Behaviour unchanged: tests/test_ingest_rules.py, tests/test_ingest_batch.py; the
-- plan guards in tests/test_plans.py show each saving.

-- Indexes -----------------------------------------------------------------------------------------

-- The lead's timeline index also carries what the ingest-time rules filter and read (direction,
-- status, channel): their newest-first reads are index-only scans, not one heap page per activity
-- (at 10M activities those pages are rarely in shared buffers). Same name, same key, same order.
-- The price: a delivery status update (sent → delivered → read) now changes an indexed column, so
-- it is never a HOT update (it writes a new entry into each index of the table).
drop index public.idx_lead_activities_tenant_lead;
create index idx_lead_activities_tenant_lead
  on public.lead_activities (tenant_id, lead_id, occurred_at desc, id desc) include (direction, status, channel);

-- Functions ---------------------------------------------------------------------------------------

-- Stable, as what it does is (timestamps print in the session's time zone): an immutable function
-- whose body is only stable is never inlined, so each answer cost a function call of its own.
alter function public.activity_json(public.lead_activities) stable;

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
 *   directory's `preferred_channel`), and neither of our last 2 outbound used it. Answered by an
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
                                                 (select l.preferred_channel from public.leads l
                                                  where l.tenant_id = p_tenant and l.lead_id = p_lead_id)) end,
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
