-- WhatsApp: activities logged by phone number (Green-API), message statuses, the follow-up an
-- alert sends, and the notifications we could not read (kept whole).

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Tables ------------------------------------------------------------------------------------------

create table public.greenapi_rejected (
  id          uuid not null default public.uuid_v7(),
  tenant_id   text not null,
  instance_id text not null,               -- the Green-API instance whose webhook token came with it
  payload     jsonb,                       -- the notification, when it is JSON PostgreSQL can store
  raw         bytea,                       -- else the body exactly as received
  reason      text not null,               -- why it could not be read
  received_at timestamptz not null default now(),
  constraint greenapi_rejected_pkey primary key (tenant_id, id),  -- tenant first: every key leads with it
  constraint greenapi_rejected_payload_or_raw check (num_nonnulls(payload, raw) = 1)
);

create index idx_greenapi_rejected_tenant on public.greenapi_rejected (tenant_id, received_at desc, id desc);

-- Grants and row-level security -------------------------------------------------------------------

grant select on table public.greenapi_rejected to authenticated;
grant select, insert on table public.greenapi_rejected to service_role;

alter table public.greenapi_rejected enable row level security;

-- Policies ----------------------------------------------------------------------------------------

create policy "Rejected notifications are visible to admins and managers of their tenant"
  on public.greenapi_rejected
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant()) and (select public.sees_whole_tenant())));

-- Functions ---------------------------------------------------------------------------------------

/**
 * Log a WhatsApp activity of the lead whose phone (E.164) it is. An unknown number becomes a
 * provisional lead (named after the sender) so that nothing is lost — unless `p_create` is false,
 * when nothing is written and `{unknown_phone: true}` is returned (the caller may look the number
 * up in the CRM first). `@lid` chats with no phone are keyed by their chat id. Service only.
 */
create or replace function public.log_activity_by_phone(
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
grant execute on function public.log_activity_by_phone(text, text, text, text, text, text, text, text, jsonb, timestamptz, text, boolean) to service_role;

/** Delivery statuses only move forward: sent → delivered → read, or to a failure. */
create or replace function public.status_rank(p_status text) returns integer
language sql immutable
as $$
  select case lower(p_status) when 'sent' then 1 when 'delivered' then 2 when 'read' then 3
                              when 'failed' then 4 when 'noaccount' then 4 when 'notingroup' then 4
                              when 'yellowcard' then 4 else 0 end
$$;
grant execute on function public.status_rank(text) to service_role;

/**
 * Record a delivery status of an activity logged with an external id (Green-API's
 * outgoingMessageStatus). Statuses only move forward, and a failure is final. A send that turns
 * out to have failed no longer counts as contact: its lead's state is rebuilt without it and the
 * alerts it resolved are reopened (unless one of the same type is already active).
 */
create or replace function public.set_activity_status(p_tenant text, p_channel text, p_external_id text, p_status text)
returns jsonb
language plpgsql
security definer  -- rebuilds lead_state and reopens alerts
set search_path = ''
as $$
declare
  v_old      public.lead_activities;
  v_new      public.lead_activities;
  v_reopened jsonb := '[]'::jsonb;
begin
  perform public.assert_acts_in(p_tenant, '{}');
  select * into v_old from public.lead_activities a
  where a.tenant_id = p_tenant and a.channel = p_channel and a.external_id = p_external_id
  for update;
  if not found then
    return jsonb_build_object('found', false);
  end if;
  if public.status_rank(p_status) < public.status_rank(v_old.status)
     or not public.counts_as_contact(v_old.status) then
    return jsonb_build_object('found', true, 'activity', public.activity_json(v_old), 'reopened', v_reopened);
  end if;

  update public.lead_activities a set status = p_status
  where a.tenant_id = v_old.tenant_id and a.id = v_old.id
  returning * into v_new;
  if public.counts_as_contact(v_old.status) and not public.counts_as_contact(p_status) then
    perform from public.lead_state s where s.tenant_id = p_tenant and s.lead_id = v_old.lead_id for update;
    perform public.refresh_lead_state(p_tenant, v_old.lead_id);
    with reopened as (
      update public.max_alerts a
      set resolved_at = null, resolved_by = null, resolution = null, resolved_by_activity = null
      where a.tenant_id = p_tenant and a.resolved_by_activity = v_old.id  -- Citus: each table names the tenant
        and not exists (select from public.max_alerts b
                        where b.tenant_id = p_tenant and b.lead_id = a.lead_id and b.type = a.type
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
create or replace function public.prepare_whatsapp(p_tenant text, p_alert_id uuid default null, p_lead_id text default null)
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

/**
 * Keep a notification that could not be read: its JSON (`p_payload`), or its body as received
 * (`p_raw`) when it is not JSON PostgreSQL can store. Service only (the webhook).
 */
create or replace function public.reject_greenapi_notification(
  p_tenant      text,
  p_instance_id text,
  p_reason      text,
  p_payload     jsonb default null,
  p_raw         bytea default null
) returns jsonb
language sql
set search_path = ''
as $$
  insert into public.greenapi_rejected (tenant_id, instance_id, reason, payload, raw)
  values (p_tenant, p_instance_id, left(p_reason, 500), p_payload, p_raw)
  returning jsonb_build_object('id', id)
$$;
grant execute on function public.reject_greenapi_notification(text, text, text, jsonb, bytea) to service_role;

/**
 * One page of a tenant's rejected notifications, newest first: to admins and managers of the
 * tenant, platform staff and the service. The raw body (when not JSON) comes base64-encoded.
 */
create or replace function public.list_greenapi_rejected(
  p_tenant text,
  p_limit  integer default 50,
  p_cursor jsonb default null
) returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_result jsonb;
begin
  perform public.assert_acts_in(p_tenant, array['admin', 'manager']);
  perform public.check_page(p_limit, p_cursor, array['o', 'i']);
  with page as (
    select r, row_number() over (order by r.received_at desc, r.id desc) as n
    from public.greenapi_rejected r
    where r.tenant_id = p_tenant
      and (p_cursor is null
           or (r.received_at, r.id) < ((p_cursor ->> 'o')::timestamptz, (p_cursor ->> 'i')::uuid))
    order by r.received_at desc, r.id desc
    limit p_limit + 1
  )
  select jsonb_build_object(
    'rejected', coalesce((select jsonb_agg(jsonb_build_object(
                            'id', (p.r).id, 'instance_id', (p.r).instance_id, 'reason', (p.r).reason,
                            'received_at', (p.r).received_at, 'payload', (p.r).payload,
                            'raw_base64', encode((p.r).raw, 'base64')) order by p.n)
                          from page p where p.n <= p_limit), '[]'),
    'next_cursor', (select jsonb_build_object('o', (p.r).received_at, 'i', (p.r).id)
                    from page p where p.n = p_limit and exists (select from page q where q.n > p_limit)))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.list_greenapi_rejected(text, integer, jsonb) to authenticated, service_role;
