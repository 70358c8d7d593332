-- Email as a channel: inbound messages matched to leads by address, automatic replies stored but not
-- counted as replies, bounces turning the send they report into a failed one, messages that cannot
-- be read kept whole (a dead letter), the From address per tenant, the subject each rule's email
-- carries, and the Idempotency-Key of sends so that a retried request does not send twice.
-- Redefines counts_as_contact (auto_reply is not contact), upsert_leads (a lead given the email
-- address of a provisional lead takes it over, as it does for a phone) and set_rule (a rule's
-- follow-up may be an email: action_name, action_subject).

-- Tables ------------------------------------------------------------------------------------------

-- The address a tenant's emails come from; a tenant without a row sends from LEADWATCH_EMAIL_FROM.
create table public.email_senders (
  tenant_id    text not null,
  from_address text not null,              -- an RFC 5322 address, e.g. 'Acme Sales <sales@acme.example>'
  updated_at   timestamptz not null default now(),
  constraint email_senders_pkey primary key (tenant_id),
  constraint email_senders_from_has_address check (from_address ~ '@' and length(from_address) <= 320)
);

-- Inbound emails leadwatch could not read (or over the size limit), kept as received.
create table public.email_rejected (
  id          uuid not null default public.uuid_v7(),
  tenant_id   text not null,
  raw         bytea not null,              -- the message as received (cut at the size limit when over it)
  reason      text not null,               -- why it could not be read
  received_at timestamptz not null default now(),
  constraint email_rejected_pkey primary key (tenant_id, id)
);
create index idx_email_rejected_tenant on public.email_rejected (tenant_id, received_at desc, id desc);

-- One row per Idempotency-Key a send came with: the answer of the send it made, replayed to a retry.
create table public.email_sends (
  tenant_id       text not null,
  idempotency_key text not null,
  request_hash    text not null,           -- what was asked (lead, alert, subject, text): a key reused for
                                           -- another request is refused
  claimed_at      timestamptz not null default now(),
  answer          jsonb,                   -- null while the send is under way
  constraint email_sends_pkey primary key (tenant_id, idempotency_key)
);

-- Inbound email → lead, by address, case-insensitively.
create index idx_leads_tenant_email on public.leads (tenant_id, lower(email)) where email is not null;

-- Grants ------------------------------------------------------------------------------------------

revoke all on table public.email_senders, public.email_rejected, public.email_sends
  from public, anon, authenticated, service_role;
grant select on table public.email_senders to authenticated, service_role;
grant insert, update, delete on table public.email_senders to service_role;
grant select on table public.email_rejected to authenticated, service_role;
grant insert on table public.email_rejected to service_role;
grant select, insert, update, delete on table public.email_sends to service_role;
alter table public.email_senders enable row level security;
alter table public.email_rejected enable row level security;
alter table public.email_sends enable row level security;

-- Policies ----------------------------------------------------------------------------------------

create policy "Email senders are visible to admins and managers of their tenant"
  on public.email_senders
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant()) and (select public.sees_whole_tenant())));

create policy "Rejected emails are visible to admins and managers of their tenant"
  on public.email_rejected
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant()) and (select public.sees_whole_tenant())));

-- Data --------------------------------------------------------------------------------------------

-- The subject each rule's email carries ({name} filled in), beside the text it already has.
update public.alert_rules r
set action = r.action || jsonb_build_object('subject', s.subject)
from (values
  ('NoContact7d', '{"fr": "Des nouvelles de votre projet ?", "en": "Any news on your project?"}'::jsonb),
  ('NoReply3d', '{"fr": "Avez-vous reçu mon message ?", "en": "Did you get my message?"}'::jsonb),
  ('StaleLead30d', '{"fr": "Votre projet est-il toujours d''actualité ?", "en": "Is your project still on?"}'::jsonb),
  ('HotLead24h', '{"fr": "Merci pour vos messages", "en": "Thank you for your messages"}'::jsonb)
) as s (type, subject)
where r.tenant_id = '*' and r.type = s.type;

-- Functions ---------------------------------------------------------------------------------------

/**
 * Does an activity with this status count as contact? A send that failed reached nobody, and an
 * automatic reply (out of office, RFC 3834) is nobody answering: both are stored and shown in the
 * timeline, but they move no silence, answer no alert and start no cycle. (Redefined from
 * 20261122000500_log_activity.sql: `auto_reply` added.)
 */
create or replace function public.counts_as_contact(p_status text) returns boolean
language sql immutable
as $$
  select p_status is null or lower(p_status) not in ('failed', 'noaccount', 'notingroup', 'auto_reply')
$$;

/**
 * Log an email of the lead whose address it came from (case-insensitive; the oldest real lead of
 * the tenant with that address when several share it). An unknown address becomes a provisional
 * lead named after the sender, unless `p_create` is false: then nothing is written and
 * `{unknown_email: true}` is answered (the caller may look the address up in the CRM first).
 * Idempotent on `p_external_id` (the Message-ID). Service only (the email webhook).
 */
create function public.log_activity_by_email(
  p_tenant          text,
  p_email           text,
  p_direction       text default 'in',
  p_sender_name     text default null,
  p_status          text default 'received',
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
  v_id   text := 'email:' || lower(p_email);
begin
  perform public.assert_acts_in(p_tenant, '{}');
  if p_email is null or p_email !~ '^[^@\s]+@[^@\s]+$' then
    perform public.raise_error('LW422', 'the sender has no email address', 'from');
  end if;
  select * into v_lead from public.leads l
  where l.tenant_id = p_tenant and l.email is not null and lower(l.email) = lower(p_email)
  order by l.provisional, l.created_at, l.lead_id
  limit 1;
  if not found then
    if not p_create then
      return jsonb_build_object('unknown_email', true);
    end if;
    insert into public.leads (tenant_id, lead_id, name, email, provisional)
    values (p_tenant, v_id, p_sender_name, p_email, true)
    on conflict do nothing;
    select * into v_lead from public.leads l where l.tenant_id = p_tenant and l.lead_id = v_id;
  end if;
  return public.log_activity(p_tenant, v_lead.lead_id, 'email', p_direction, p_status, p_message_snippet,
                             p_meta, p_occurred_at, p_external_id)
         || jsonb_build_object('lead', public.lead_json(v_lead));
end
$$;
grant execute on function public.log_activity_by_email(text, text, text, text, text, text, jsonb, timestamptz,
                                                       text, boolean) to service_role;

/**
 * What an email follow-up needs: the lead (with its address), the tenant's From address (null: the
 * deployment's default) and, for an alert's suggested action (`send_email`), the alert and the text
 * and subject its rule sends in the tenant's language, {name} filled in. An alert already resolved
 * is not acted on again (409): a retried action does not send twice. Runs as the caller: an alert
 * or lead they may not see is not found.
 */
create function public.prepare_email(p_tenant text, p_alert_id uuid default null, p_lead_id text default null)
returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_alert   public.max_alerts;
  v_rule    public.alert_rules;
  v_default public.alert_rules;
  v_lead    public.leads;
  v_text    text;
  v_subject text;
begin
  perform public.assert_acts_in(p_tenant);
  if p_alert_id is not null then
    select * into v_alert from public.max_alerts a where a.tenant_id = p_tenant and a.id = p_alert_id;
    if not found then
      perform public.raise_error('LW404', 'alert not found', 'id');
    end if;
    if v_alert.suggested_action ->> 'action' is distinct from 'send_email' then
      perform public.raise_error('LW422', format('the action %s of this alert is not an email',
                                                 coalesce(v_alert.suggested_action ->> 'action', '(none)')), 'action');
    end if;
    if v_alert.resolved_at is not null then
      perform public.raise_error('LW409', 'the alert is already resolved: its action is not run again', 'id');
    end if;
    select * into v_rule from public.rules_for(p_tenant) r where r.type = v_alert.type;
    select * into v_default from public.alert_rules r where r.tenant_id = '*' and r.type = v_alert.type;
    v_text := coalesce(v_rule.action -> 'text' ->> v_rule.locale, v_rule.action -> 'text' ->> 'fr');
    v_subject := coalesce(v_rule.action -> 'subject' ->> v_rule.locale, v_default.action -> 'subject' ->> v_rule.locale,
                          v_rule.action -> 'subject' ->> 'fr', v_default.action -> 'subject' ->> 'fr',
                          v_rule.action -> 'label' ->> v_rule.locale);
    if v_text is null then
      perform public.raise_error('LW422', 'the rule of this alert has no text to send', 'action');
    end if;
  end if;

  select * into v_lead from public.leads l
  where l.tenant_id = p_tenant and l.lead_id = coalesce(v_alert.lead_id, p_lead_id);
  if not found then
    perform public.raise_error('LW404', 'lead not found in the directory', 'leadId');
  end if;
  if v_lead.email is null then
    perform public.raise_error('LW422', 'the lead has no email address', 'email');
  end if;
  return jsonb_build_object(
    'lead', public.lead_json(v_lead),
    'alert_type', v_alert.type,
    'from', (select s.from_address from public.email_senders s where s.tenant_id = p_tenant),
    'text', replace(v_text, ' {name}', coalesce(' ' || v_lead.name, '')),
    'subject', replace(v_subject, ' {name}', coalesce(' ' || v_lead.name, '')));
end
$$;
grant execute on function public.prepare_email(text, uuid, text) to authenticated, service_role;

/**
 * Claim an Idempotency-Key before sending: `{claimed: true}` when this request may send;
 * otherwise `{claimed: false, answer}` — the answer of the send the key already made (null while
 * it is under way) — or 422 when the key came with another request. A claim left without an
 * answer for 10 minutes (its sender died) may be claimed again. Service only.
 */
create function public.claim_email_send(p_tenant text, p_key text, p_request_hash text) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_send public.email_sends;
begin
  perform public.assert_acts_in(p_tenant, '{}');
  insert into public.email_sends as s (tenant_id, idempotency_key, request_hash)
  values (p_tenant, p_key, p_request_hash)
  on conflict (tenant_id, idempotency_key) do update set claimed_at = now(), request_hash = excluded.request_hash
    where s.answer is null and s.claimed_at < now() - interval '10 minutes'
  returning * into v_send;
  if found then
    return jsonb_build_object('claimed', true);
  end if;
  select * into v_send from public.email_sends s where s.tenant_id = p_tenant and s.idempotency_key = p_key;
  if v_send.request_hash <> p_request_hash then
    perform public.raise_error('LW422', 'this Idempotency-Key was used for another request', 'Idempotency-Key');
  end if;
  return jsonb_build_object('claimed', false, 'answer', v_send.answer);
end
$$;
grant execute on function public.claim_email_send(text, text, text) to service_role;

/**
 * Settle a claimed Idempotency-Key: keep the send's answer for the retries (`p_answer`), or, when
 * nothing was sent (`p_answer` null: the server refused it), release the key so that a retry may
 * send. Service only.
 */
create function public.settle_email_send(p_tenant text, p_key text, p_answer jsonb default null) returns jsonb
language plpgsql
set search_path = ''
as $$
begin
  perform public.assert_acts_in(p_tenant, '{}');
  if p_answer is null then
    delete from public.email_sends s where s.tenant_id = p_tenant and s.idempotency_key = p_key and s.answer is null;
  else
    update public.email_sends s set answer = p_answer where s.tenant_id = p_tenant and s.idempotency_key = p_key;
  end if;
  return jsonb_build_object('settled', true);
end
$$;
grant execute on function public.settle_email_send(text, text, jsonb) to service_role;

/** Keep an inbound email that could not be read, as received. Service only (the webhook). */
create function public.reject_email(p_tenant text, p_reason text, p_raw bytea) returns jsonb
language sql
set search_path = ''
as $$
  insert into public.email_rejected (tenant_id, reason, raw)
  values (p_tenant, left(p_reason, 500), p_raw)
  returning jsonb_build_object('id', id)
$$;
grant execute on function public.reject_email(text, text, bytea) to service_role;

/**
 * One page of a tenant's rejected emails, newest first, each message base64-encoded: to admins and
 * managers of the tenant, platform staff and the service.
 */
create function public.list_email_rejected(p_tenant text, p_limit integer default 50, p_cursor jsonb default null)
returns jsonb
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
    from public.email_rejected r
    where r.tenant_id = p_tenant
      and (p_cursor is null
           or (r.received_at, r.id) < ((p_cursor ->> 'o')::timestamptz, (p_cursor ->> 'i')::uuid))
    order by r.received_at desc, r.id desc
    limit p_limit + 1
  )
  select jsonb_build_object(
    'rejected', coalesce((select jsonb_agg(jsonb_build_object(
                            'id', (p.r).id, 'reason', (p.r).reason, 'received_at', (p.r).received_at,
                            'raw_base64', encode((p.r).raw, 'base64')) order by p.n)
                          from page p where p.n <= p_limit), '[]'),
    'next_cursor', (select jsonb_build_object('o', (p.r).received_at, 'i', (p.r).id)
                    from page p where p.n = p_limit and exists (select from page q where q.n > p_limit)))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.list_email_rejected(text, integer, jsonb) to authenticated, service_role;

/**
 * Add or update leads (a JSON array of {lead_id, name, email, phone, owner_id, value, currency,
 * preferred_channel}). A field left out or null keeps its stored value. A new lead starts its
 * silence clock now; a lead whose value crosses the tenant's HighValueRisk threshold starts (or
 * stops) being watched for it. A lead given the phone of a provisional lead (an unknown WhatsApp
 * number) or its email address (an unknown sender of an email, compared case-insensitively) takes
 * it over, with its activities and alerts; the phone of another real lead is a conflict. Users:
 * admins and managers of the tenant only. (Redefined from 20261126000050_state_carries_preferred_channel.sql:
 * the email address merges too.)
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
  v_merged     text[] := '{}'::text[];
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
  when unique_violation then  -- raise_error's error, raised here so that the block visibly ends
    raise exception using errcode = 'LW409', message = 'phone is already used by another lead of this tenant',
                          detail = 'phone';
end
$$;

/**
 * Change the tenant's rule of one type: the fields present in `p_changes` (enabled, threshold,
 * severity, escalate_after, escalated_severity, min_count, min_value, currency, locale, messages
 * and action_text per locale — merged into what is in force —, overdue_after, and action_name
 * (send_whatsapp or send_email) and action_subject per locale, the email's subject) replace those of the
 * rule in force, into the tenant's own row. Validated: a threshold is positive, a ladder rises
 * (later and higher), the messages include the rule's locale. Takes effect at once for every lead
 * of the tenant: stored due times are recomputed, and a disabled rule's active alerts resolved
 * (`rule`). Admins of the tenant and platform staff only. (Redefined from 20261123000320_rules_api.sql:
 * a rule's follow-up may be an email, with its subject.)
 */
create or replace function public.set_rule(p_tenant text, p_type text, p_changes jsonb) returns jsonb
language plpgsql
security definer  -- writes the tenant's rules and its leads' state, which users cannot write themselves
set search_path = ''
as $$
declare
  v_rule public.alert_rules;
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  if p_tenant = '*' then
    perform public.raise_error('LW422', 'the defaults are changed by a migration, not per tenant', 'tenant');
  end if;
  select * into v_rule from public.rules_for(p_tenant) r where r.type = p_type;
  if not found then
    perform public.raise_error('LW404', 'no rule of this type', 'type');
  end if;

  v_rule.tenant_id := p_tenant;
  if p_changes ? 'enabled' then v_rule.enabled := (p_changes ->> 'enabled')::boolean; end if;
  if p_changes ? 'threshold' then v_rule.threshold := (p_changes ->> 'threshold')::interval; end if;
  if p_changes ? 'severity' then v_rule.severity := p_changes ->> 'severity'; end if;
  if p_changes ? 'escalate_after' then v_rule.escalate_after := (p_changes ->> 'escalate_after')::interval; end if;
  if p_changes ? 'escalated_severity' then v_rule.escalated_severity := p_changes ->> 'escalated_severity'; end if;
  if p_changes ? 'min_count' then v_rule.min_count := (p_changes ->> 'min_count')::smallint; end if;
  if p_changes ? 'min_value' then v_rule.min_value := (p_changes ->> 'min_value')::numeric; end if;
  if p_changes ? 'currency' then v_rule.currency := p_changes ->> 'currency'; end if;
  if p_changes ? 'locale' then v_rule.locale := p_changes ->> 'locale'; end if;
  if p_changes ? 'overdue_after' then v_rule.overdue_after := (p_changes ->> 'overdue_after')::interval; end if;
  if p_changes ? 'messages' then v_rule.messages := v_rule.messages || (p_changes -> 'messages'); end if;
  if p_changes ? 'action_text' then
    v_rule.action := jsonb_set(v_rule.action, '{text}', coalesce(v_rule.action -> 'text', '{}') || (p_changes -> 'action_text'));
  end if;

  if p_changes ? 'action_name' then
    v_rule.action := v_rule.action || jsonb_build_object(
      'action', p_changes ->> 'action_name',
      'label', case p_changes ->> 'action_name'
                 when 'send_email' then '{"fr": "Relancer par email", "en": "Follow up by email"}'::jsonb
                 else '{"fr": "Relancer par WhatsApp", "en": "Follow up on WhatsApp"}'::jsonb end);
  end if;
  if p_changes ? 'action_subject' then
    v_rule.action := jsonb_set(v_rule.action, '{subject}',
                               coalesce(v_rule.action -> 'subject', '{}') || (p_changes -> 'action_subject'));
  end if;
  if v_rule.action ->> 'action' in ('send_whatsapp', 'send_email')
     and v_rule.action -> 'text' ->> v_rule.locale is null then
    perform public.raise_error('LW422', format('actionText must include the rule''s locale (%s) for a message to send',
                                               v_rule.locale), 'actionText');
  end if;

  if v_rule.threshold is null and p_type <> 'PreferredChannel' then
    perform public.raise_error('LW422', 'threshold is required for this rule', 'threshold');
  end if;
  if v_rule.threshold <= interval '0' then
    perform public.raise_error('LW422', 'threshold must be positive', 'threshold');
  end if;
  if (v_rule.escalate_after is null) <> (v_rule.escalated_severity is null) then
    perform public.raise_error('LW422', 'escalateAfter and escalatedSeverity go together', 'escalateAfter');
  end if;
  if v_rule.escalate_after <= v_rule.threshold then
    perform public.raise_error('LW422', 'escalateAfter must be longer than threshold (a ladder rises)', 'escalateAfter');
  end if;
  if (case v_rule.escalated_severity when 'high' then 1 when 'med' then 2 when 'low' then 3 end)
     >= (case v_rule.severity when 'high' then 1 when 'med' then 2 else 3 end) then
    perform public.raise_error('LW422', 'escalatedSeverity must be higher than severity (a ladder rises)',
                               'escalatedSeverity');
  end if;
  if p_type in ('HotLead24h', 'PreferredChannel') and v_rule.min_count is null then
    perform public.raise_error('LW422', 'minCount is required for this rule', 'minCount');
  end if;
  if p_type = 'PreferredChannel' and v_rule.min_count > 5 then
    perform public.raise_error('LW422', 'minCount counts among the last 5 inbound: at most 5', 'minCount');
  end if;
  if p_type = 'HighValueRisk' and (v_rule.min_value is null or v_rule.currency is null) then
    perform public.raise_error('LW422', 'minValue and currency are required for this rule', 'minValue');
  end if;
  if v_rule.messages ->> v_rule.locale is null then
    perform public.raise_error('LW422', format('messages must include the rule''s locale (%s)', v_rule.locale), 'messages');
  end if;

  insert into public.alert_rules as r
  select v_rule.*
  on conflict (tenant_id, type) do update set
    enabled = excluded.enabled, threshold = excluded.threshold, severity = excluded.severity,
    escalate_after = excluded.escalate_after, escalated_severity = excluded.escalated_severity,
    min_value = excluded.min_value, currency = excluded.currency, supersedes = excluded.supersedes,
    locale = excluded.locale, messages = excluded.messages, action = excluded.action,
    min_count = excluded.min_count, overdue_after = excluded.overdue_after;

  if p_type in ('NoContact7d', 'NoReply3d', 'StaleLead30d', 'HighValueRisk') then
    perform public.recompute_due_times(p_tenant, p_type);
  end if;
  if not v_rule.enabled then
    update public.max_alerts a
    set resolved_at = now(), resolved_by = 'system', resolution = 'rule'
    where a.tenant_id = p_tenant and a.type = p_type and a.resolved_at is null;
  end if;
  return jsonb_build_object('rule', public.rule_json(v_rule));
end
$$;
