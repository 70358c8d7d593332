-- Logging an activity: store it once, move the lead's state forward, and clear the alerts the
-- activity answers — one transaction, one call.

-- Functions ---------------------------------------------------------------------------------------

/** Does an activity with this status count as contact? A send that failed reached nobody. */
create function public.counts_as_contact(p_status text) returns boolean
language sql immutable
as $$
  select p_status is null or lower(p_status) not in ('failed', 'noaccount', 'notingroup')
$$;
grant execute on function public.counts_as_contact(text) to authenticated, service_role;

/** An activity as the API shows it. */
create function public.activity_json(p_activity public.lead_activities) returns jsonb
language sql immutable
as $$
  select jsonb_build_object(
    'id', p_activity.id, 'tenant_id', p_activity.tenant_id, 'lead_id', p_activity.lead_id,
    'channel', p_activity.channel, 'direction', p_activity.direction, 'status', p_activity.status,
    'message_snippet', p_activity.message_snippet, 'meta', p_activity.meta,
    'occurred_at', p_activity.occurred_at, 'created_at', p_activity.created_at,
    'external_id', p_activity.external_id)
$$;
grant execute on function public.activity_json(public.lead_activities) to authenticated, service_role;

/**
 * Log one activity of a lead and apply the rules it triggers.
 *
 * Idempotent on (tenant, channel, external id): a replay returns the stored activity with
 * `duplicate: true` and changes nothing. Judged by `occurred_at`: an event older than what we
 * already know never moves "last activity" back, and an inbound that occurred before our last
 * outbound does not answer it. A send that failed is stored but is not contact. Users log only
 * in their tenant, and agents only for the leads they own.
 */
create function public.log_activity(
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
as $$
declare
  v_at       timestamptz := coalesce(p_occurred_at, now());
  v_activity public.lead_activities;
  v_old      public.lead_state;
  v_new      public.lead_state;
  v_rules    record;
  v_types    text[] := '{}';
  v_resolved jsonb := '[]';
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
    select * into v_rules from public.rule_thresholds(p_tenant);

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

    -- Most activities find nothing to answer: look before writing (and firing the history trigger).
    if cardinality(v_types) > 0 and exists (select from public.max_alerts a
                                            where a.tenant_id = p_tenant and a.lead_id = p_lead_id
                                              and a.resolved_at is null) then
      with resolved as (
        update public.max_alerts a
        set resolved_at = now(), resolved_by = 'system', resolution = 'activity', resolved_by_activity = v_activity.id
        where a.tenant_id = p_tenant and a.lead_id = p_lead_id and a.resolved_at is null
          and a.type = any (v_types)
        returning a.type
      )
      select coalesce(jsonb_agg(r.type order by r.type), '[]') into v_resolved from resolved r;
    end if;
  end if;

  return jsonb_build_object('activity', public.activity_json(v_activity),
                            'alerts', jsonb_build_object('created', '[]'::jsonb, 'resolved', v_resolved),
                            'duplicate', false);
end
$$;
grant execute on function public.log_activity(text, text, text, text, text, text, jsonb, timestamptz, text)
  to authenticated, service_role;
