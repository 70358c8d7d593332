-- WhatsApp (Green-API): messages matched to leads by phone, delivery statuses, and what a
-- follow-up sends.

-- Functions ---------------------------------------------------------------------------------------

/**
 * Log a WhatsApp activity of the lead whose phone (E.164) it is. An unknown number becomes a
 * provisional lead (named after the sender) so that nothing is lost — unless `p_create` is false,
 * when nothing is written and `{unknown_phone: true}` is returned (the caller may look the number
 * up in the CRM first). `@lid` chats with no phone are keyed by their chat id. Service only.
 */
create function public.log_activity_by_phone(
  p_tenant          text,
  p_chat_id         text,
  p_direction       text,
  p_phone           text default null,
  p_sender_name     text default null,
  p_channel         text default 'whatsapp',
  p_status          text default 'sent',
  p_message_snippet text default null,
  p_meta            jsonb default null,
  p_occurred_at     timestamptz default null,
  p_external_id     text default null,
  p_create          boolean default true
) returns jsonb
language plpgsql
security definer  -- may add a provisional lead
set search_path = ''
as $$
declare
  v_lead public.leads;
  v_id   text := 'wa:' || coalesce(p_phone, p_chat_id);
begin
  perform public.assert_acts_in(p_tenant, '{}');
  select * into v_lead from public.leads l
  where l.tenant_id = p_tenant and (l.phone = p_phone or (p_phone is null and l.lead_id = v_id));
  if not found then
    if not p_create then
      return jsonb_build_object('unknown_phone', true);
    end if;
    insert into public.leads (tenant_id, lead_id, name, phone, provisional)
    values (p_tenant, v_id, p_sender_name, p_phone, true)
    on conflict do nothing;
    select * into v_lead from public.leads l
    where l.tenant_id = p_tenant and (l.phone = p_phone or (p_phone is null and l.lead_id = v_id));
  end if;
  return public.log_activity(p_tenant, v_lead.lead_id, p_channel, p_direction, p_status, p_message_snippet,
                             p_meta, p_occurred_at, p_external_id)
         || jsonb_build_object('lead', public.lead_json(v_lead));
end
$$;
grant execute on function public.log_activity_by_phone(text, text, text, text, text, text, text, text, jsonb,
                                                       timestamptz, text, boolean) to service_role;

/** Delivery statuses only move forward: sent → delivered → read, or to a failure. */
create function public.status_rank(p_status text) returns integer
language sql immutable
as $$
  select case lower(p_status) when 'sent' then 1 when 'delivered' then 2 when 'read' then 3
                              when 'failed' then 4 when 'noaccount' then 4 when 'notingroup' then 4
                              when 'yellowcard' then 4 else 0 end
$$;
grant execute on function public.status_rank(text) to service_role;

/**
 * Record a delivery status of a logged message. When it turns the message into one that does not
 * count as contact (failed, noAccount), the lead's state is rebuilt without it and the alerts it
 * had answered are reopened. `{found: false}` when no such message was logged. Service only.
 */
create function public.set_activity_status(p_tenant text, p_channel text, p_external_id text, p_status text)
returns jsonb
language plpgsql
security definer  -- rebuilds lead_state and reopens alerts
set search_path = ''
as $$
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

  update public.lead_activities a set status = p_status where a.id = v_old.id returning * into v_new;
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
$$;
grant execute on function public.set_activity_status(text, text, text, text) to service_role;

/**
 * What a WhatsApp follow-up needs: the lead (with its phone) and, for an alert's suggested action,
 * the alert and the message its rule sends in the tenant's language. Runs as the caller: an alert
 * or lead they may not see is not found.
 */
create function public.prepare_whatsapp(p_tenant text, p_alert_id uuid default null, p_lead_id text default null)
returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_alert public.max_alerts;
  v_rule  public.alert_rules;
  v_lead  public.leads;
  v_text  text;
begin
  perform public.assert_acts_in(p_tenant);
  if p_alert_id is not null then
    select * into v_alert from public.max_alerts a where a.id = p_alert_id and a.tenant_id = p_tenant;
    if not found then
      perform public.raise_error('LW404', 'alert not found', 'id');
    end if;
    if v_alert.suggested_action ->> 'action' is distinct from 'send_whatsapp' then
      perform public.raise_error('LW422', format('the action %s of this alert is not one leadwatch runs',
                                                 coalesce(v_alert.suggested_action ->> 'action', '(none)')), 'action');
    end if;
    select * into v_rule from public.rules_for(p_tenant) r where r.type = v_alert.type;
    v_text := coalesce(v_rule.action -> 'text' ->> v_rule.locale, v_rule.action -> 'text' ->> 'fr');
  end if;

  select * into v_lead from public.leads l where l.tenant_id = p_tenant and l.lead_id = coalesce(v_alert.lead_id, p_lead_id);
  if not found then
    perform public.raise_error('LW404', 'lead not found in the directory', 'leadId');
  end if;
  if v_lead.phone is null then
    perform public.raise_error('LW422', 'the lead has no phone number', 'phone');
  end if;
  return jsonb_build_object(
    'lead', public.lead_json(v_lead),
    'alert_type', v_alert.type,
    'text', replace(v_text, ' {name}', coalesce(' ' || v_lead.name, '')));
end
$$;
grant execute on function public.prepare_whatsapp(text, uuid, text) to authenticated, service_role;
