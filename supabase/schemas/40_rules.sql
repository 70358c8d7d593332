-- Rules: the defaults and a tenant's overrides read by the sweep and by ingest, and the rules API
-- (a change recomputes the due times of the tenant's leads).

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Default rows ------------------------------------------------------------------------------------

-- The time-based rules' defaults (the sweep's), then the ingest rules' (judged as activities arrive).
insert into public.alert_rules
  (type, threshold, severity, escalate_after, escalated_severity, min_value, currency, supersedes, messages, action)
values
  ('NoContact7d', '7 days', 'med', '14 days', 'high', null, null, null,
   '{"fr": "Aucun contact depuis {days} jours. Lead à risque de perte.",
     "en": "No contact for {days} days. Lead at risk of being lost."}',
   '{"label": {"fr": "Relancer par WhatsApp", "en": "Follow up on WhatsApp"},
     "action": "send_whatsapp", "params": {"template": "relance_froide"},
     "text": {"fr": "Bonjour {name}, je reviens vers vous : avez-vous pu avancer sur votre projet ? Je reste disponible pour en parler.",
              "en": "Hello {name}, just following up: have you been able to move forward with your project? Happy to talk whenever suits you."},
     "subject": {"fr": "Des nouvelles de votre projet ?", "en": "Any news on your project?"}}'),
  ('NoReply3d', '3 days', 'med', '7 days', 'high', null, null, null,
   '{"fr": "Pas de réponse depuis {days} jours à notre dernier message.",
     "en": "No reply for {days} days to our last message."}',
   '{"label": {"fr": "Relancer par WhatsApp", "en": "Follow up on WhatsApp"},
     "action": "send_whatsapp", "params": {"template": "relance_sans_reponse"},
     "text": {"fr": "Bonjour {name}, avez-vous bien reçu mon dernier message ? N''hésitez pas si vous avez des questions.",
              "en": "Hello {name}, did you get my last message? Let me know if you have any questions."},
     "subject": {"fr": "Avez-vous reçu mon message ?", "en": "Did you get my message?"}}'),
  ('StaleLead30d', '30 days', 'low', null, null, null, null, 'NoContact7d',
   '{"fr": "Aucune activité depuis {days} jours. Lead à requalifier.",
     "en": "No activity for {days} days. Lead needs requalifying."}',
   '{"label": {"fr": "Relancer par WhatsApp", "en": "Follow up on WhatsApp"},
     "action": "send_whatsapp", "params": {"template": "reactivation"},
     "text": {"fr": "Bonjour {name}, cela fait un moment ! Votre projet est-il toujours d''actualité ?",
              "en": "Hello {name}, it has been a while! Is your project still on?"},
     "subject": {"fr": "Votre projet est-il toujours d''actualité ?", "en": "Is your project still on?"}}'),
  ('HighValueRisk', '3 days', 'high', null, null, 10000, 'EUR', null,
   '{"fr": "Lead à forte valeur sans contact depuis {days} jours.",
     "en": "High-value lead without contact for {days} days."}',
   '{"label": {"fr": "Appeler le lead", "en": "Call the lead"},
     "action": "call_lead", "params": {}}');

insert into public.alert_rules (type, threshold, severity, min_count, messages, action)
values
  ('HotLead24h', '24 hours', 'high', 3,
   '{"fr": "{count} messages du lead en {hours} h sans réponse de notre part. Lead très actif, à prioriser.",
     "en": "{count} messages from the lead in {hours} h without a reply from us. Very active lead: prioritise."}',
   '{"label": {"fr": "Répondre maintenant", "en": "Reply now"},
     "action": "send_whatsapp", "params": {"template": "reponse_rapide"},
     "text": {"fr": "Bonjour {name}, merci pour vos messages ! Je reviens vers vous tout de suite.",
              "en": "Hello {name}, thank you for your messages! I will get back to you right away."},
     "subject": {"fr": "Merci pour vos messages", "en": "Thank you for your messages"}}'),
  ('PreferredChannel', null, 'low', 3,
   '{"fr": "Le lead préfère le canal {channel}, mais nos 2 derniers messages sont passés par un autre canal.",
     "en": "The lead prefers {channel}, but our last 2 messages went through another channel."}',
   '{"label": {"fr": "Recontacter sur son canal préféré", "en": "Reach out on their preferred channel"},
     "action": "switch_channel", "params": {},
     "text": {"fr": "Bonjour {name}, je vous recontacte par ici, puisque c''est le canal que vous préférez. Où en est votre projet ?",
              "en": "Hello {name}, reaching out here since this is the channel you prefer. How is your project going?"}}');

-- Functions ---------------------------------------------------------------------------------------

/** The rules in force for a tenant: its own row for a type where it has one, else the default. */
create or replace function public.rules_for(p_tenant text) returns setof public.alert_rules
language sql stable
as $$
  select distinct on (r.type) r.*
  from public.alert_rules r
  where r.tenant_id in (p_tenant, '*')
  order by r.type, r.tenant_id = '*'
$$;
grant execute on function public.rules_for(text) to authenticated, service_role;

/**
 * The thresholds of the time-based rules in force for a tenant (null where a rule is disabled).
 * One row; a table function so that Postgres inlines it into the caller's query.
 */
create or replace function public.rule_thresholds(p_tenant text)
returns table (no_contact interval, no_reply interval, stale interval, high_value interval)
language sql stable
as $$
  select max(r.threshold) filter (where r.type = 'NoContact7d' and r.enabled),
         max(r.threshold) filter (where r.type = 'NoReply3d' and r.enabled),
         max(r.threshold) filter (where r.type = 'StaleLead30d' and r.enabled),
         max(r.threshold) filter (where r.type = 'HighValueRisk' and r.enabled)
  from public.rules_for(p_tenant) r
$$;
grant execute on function public.rule_thresholds(text) to authenticated, service_role;

/**
 * Open an ingest-time alert for a lead with its rule's message and action in the tenant's language:
 * `{count}`, `{hours}` and `{channel}` filled in. The caller holds the lead's state row and has
 * checked that no alert of this type is active.
 */
create or replace function public.raise_ingest_alert(
  p_tenant  text,
  p_lead_id text,
  p_type    text,
  p_since   timestamptz,           -- evidence: when the burst (or our streak on another channel) began
  p_count   integer default null,
  p_channel text default null
) returns void
language plpgsql
set search_path = ''
as $$
begin
  insert into public.max_alerts (tenant_id, lead_id, type, severity, message, suggested_action, cycle_started_at, channel)
  select p_tenant, p_lead_id, r.type, r.severity,
         replace(replace(replace(coalesce(r.messages ->> r.locale, r.messages ->> 'fr'),
                                 '{count}', coalesce(p_count::text, '')),
                         '{hours}', coalesce((extract(epoch from r.threshold) / 3600)::integer::text, '')),
                 '{channel}', coalesce(p_channel, '')),
         jsonb_build_object(
           'label', coalesce(r.action -> 'label' ->> r.locale, r.action -> 'label' ->> 'fr'),
           'action', r.action ->> 'action',
           'params', coalesce(r.action -> 'params', '{}'::jsonb) || jsonb_build_object('leadId', p_lead_id)
                     || case when p_channel is null then '{}'::jsonb else jsonb_build_object('channel', p_channel) end),
         p_since, p_channel
  from public.rules_for(p_tenant) r
  where r.type = p_type;
end
$$;
grant execute on function public.raise_ingest_alert(text, text, text, timestamptz, integer, text) to service_role;

/** A duration as the API writes it: '7d', '36h' or '90m' (null stays null). */
create or replace function public.duration_text(p_interval interval) returns text
language sql immutable
as $$
  select case
    when p_interval is null then null
    when extract(epoch from p_interval)::bigint % 86400 = 0 then (extract(epoch from p_interval)::bigint / 86400) || 'd'
    when extract(epoch from p_interval)::bigint % 3600 = 0 then (extract(epoch from p_interval)::bigint / 3600) || 'h'
    else (extract(epoch from p_interval)::bigint / 60) || 'm'
  end
$$;
grant execute on function public.duration_text(interval) to authenticated, service_role;

/** A rule as the API shows it (with its clock); `source` says whether it is the default or the tenant's own. */
create or replace function public.rule_json(p_rule public.alert_rules) returns jsonb
language sql immutable
as $$
  select jsonb_build_object(
    'type', p_rule.type, 'enabled', p_rule.enabled, 'threshold', public.duration_text(p_rule.threshold),
    'severity', p_rule.severity, 'escalate_after', public.duration_text(p_rule.escalate_after),
    'escalated_severity', p_rule.escalated_severity, 'min_count', p_rule.min_count,
    'min_value', p_rule.min_value, 'currency', p_rule.currency, 'supersedes', p_rule.supersedes,
    'locale', p_rule.locale, 'messages', p_rule.messages, 'action', p_rule.action,
    'overdue_after', public.duration_text(p_rule.overdue_after), 'clock', p_rule.clock,
    'source', case when p_rule.tenant_id = '*' then 'default' else 'tenant' end)
$$;
grant execute on function public.rule_json(public.alert_rules) to authenticated, service_role;

/** The rules in force for a tenant (its own where it has one, else the default), by type. */
create or replace function public.list_rules(p_tenant text) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  perform public.assert_acts_in(p_tenant);
  return jsonb_build_object(
    'rules', (select jsonb_agg(public.rule_json(r) order by r.type) from public.rules_for(p_tenant) r));
end
$$;
grant execute on function public.list_rules(text) to authenticated, service_role;

/**
 * Recompute, set-based, the due times of one time-based rule for every lead of a tenant after its
 * rule changed, as log_activity and the sweep would have set them under the new rule: the
 * threshold after the silence began when no alert was raised for it yet, the next step of the
 * ladder while one is active, nothing once the alert was resolved by hand (the same silence is not
 * raised again) or the rule is disabled. For HighValueRisk, which leads are watched follows the
 * value threshold first, and the alerts of leads no longer watched are resolved (`rule`). On the
 * business clock the steps count the tenant's working time (also after its calendar changed).
 */
create or replace function public.recompute_due_times(p_tenant text, p_type text) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_rule public.alert_rules;
  v_cal  public.business_calendars;
begin
  select * into v_rule from public.rules_for(p_tenant) r where r.type = p_type;
  if v_rule.clock = 'business' then
    v_cal := public.calendar_for(p_tenant);
  end if;

  if p_type = 'HighValueRisk' then
    update public.lead_state s
    set high_value = coalesce((select l.value >= v_rule.min_value and l.currency = v_rule.currency and v_rule.enabled
                               from public.leads l where l.tenant_id = s.tenant_id and l.lead_id = s.lead_id), false)
    where s.tenant_id = p_tenant;
    update public.max_alerts a
    set resolved_at = now(), resolved_by = 'system', resolution = 'rule'
    from public.lead_state s
    where a.tenant_id = p_tenant and a.type = 'HighValueRisk' and a.resolved_at is null
      and s.tenant_id = a.tenant_id and s.lead_id = a.lead_id and not s.high_value;
  end if;

  update public.lead_state s set
    no_contact_due_at = case when p_type = 'NoContact7d'   then d.due_at else s.no_contact_due_at end,
    no_reply_due_at   = case when p_type = 'NoReply3d'     then d.due_at else s.no_reply_due_at end,
    stale_due_at      = case when p_type = 'StaleLead30d'  then d.due_at else s.stale_due_at end,
    high_value_due_at = case when p_type = 'HighValueRisk' then d.due_at else s.high_value_due_at end
  from public.lead_state o
  -- When the rule's condition began to hold (null: it does not).
  cross join lateral (select case p_type
    when 'NoReply3d' then case when o.last_outbound_at > coalesce(o.last_inbound_at, '-infinity') then o.last_outbound_at end
    when 'HighValueRisk' then case when o.high_value then coalesce(o.last_activity_at, o.entered_at) end
    else coalesce(o.last_activity_at, o.entered_at)
  end as since) c
  -- The alert this silence raised, if any (the active one first).
  left join lateral (select a.resolved_at, a.severity
                     from public.max_alerts a
                     where a.tenant_id = o.tenant_id and a.lead_id = o.lead_id and a.type = p_type
                       and a.cycle_started_at = c.since
                     order by a.resolved_at is null desc
                     limit 1) a on true
  cross join lateral (select case
    when not v_rule.enabled or c.since is null or a.resolved_at is not null then null
    when a.severity is null then public.clock_add(v_cal, v_rule.clock = 'business', c.since, v_rule.threshold)
    when a.severity is distinct from v_rule.escalated_severity then public.clock_add(v_cal, v_rule.clock = 'business', c.since, v_rule.escalate_after)
  end as due_at) d
  where o.tenant_id = p_tenant and s.tenant_id = o.tenant_id and s.lead_id = o.lead_id;
end
$$;
grant execute on function public.recompute_due_times(text, text) to service_role;

/**
 * Change the tenant's rule of one type: the fields present in `p_changes` (enabled, threshold,
 * severity, escalate_after, escalated_severity, min_count, min_value, currency, locale, messages
 * and action_text per locale — merged into what is in force —, overdue_after, clock (the ingest-time
 * rules' windows stay elapsed time, their clock counts only the overdue delay), and the suggested
 * action: `action` (send_whatsapp, send_email, switch_channel, call_lead; its label becomes the
 * action's default), `action_label` and `action_subject` (an email's subject) per locale, merged)
 * replace those of the rule in force, into the tenant's own row. Validated: a threshold is
 * positive, a ladder rises (later and higher), the messages include the rule's locale, a WhatsApp
 * or email follow-up has a text in it, the clock is calendar or business. Takes effect at once for
 * every lead of the tenant: stored due times are recomputed, and a disabled rule's active alerts
 * resolved (`rule`). Admins of the tenant and platform staff only.
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
  if p_changes ? 'clock' then v_rule.clock := p_changes ->> 'clock'; end if;
  if p_changes ? 'messages' then v_rule.messages := v_rule.messages || (p_changes -> 'messages'); end if;
  if p_changes ? 'action' then
    if p_changes ->> 'action' is null
       or p_changes ->> 'action' not in ('send_whatsapp', 'send_email', 'switch_channel', 'call_lead') then
      perform public.raise_error('LW422', 'action must be send_whatsapp, send_email, switch_channel or call_lead',
                                 'action');
    end if;
    v_rule.action := v_rule.action || jsonb_build_object(
      'action', p_changes ->> 'action',
      'label', case p_changes ->> 'action'
                 when 'send_email' then '{"fr": "Relancer par email", "en": "Follow up by email"}'::jsonb
                 when 'send_whatsapp' then '{"fr": "Relancer par WhatsApp", "en": "Follow up on WhatsApp"}'::jsonb
                 when 'switch_channel' then
                   '{"fr": "Recontacter sur son canal préféré", "en": "Reach out on their preferred channel"}'::jsonb
                 else '{"fr": "Appeler le lead", "en": "Call the lead"}'::jsonb end);
  end if;
  if p_changes ? 'action_label' then
    v_rule.action := jsonb_set(v_rule.action, '{label}', coalesce(v_rule.action -> 'label', '{}') || (p_changes -> 'action_label'));
  end if;
  if p_changes ? 'action_text' then
    v_rule.action := jsonb_set(v_rule.action, '{text}', coalesce(v_rule.action -> 'text', '{}') || (p_changes -> 'action_text'));
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
  if v_rule.clock is null or v_rule.clock not in ('calendar', 'business') then
    perform public.raise_error('LW422', 'clock is calendar or business', 'clock');
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
    min_count = excluded.min_count, overdue_after = excluded.overdue_after, clock = excluded.clock;

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
grant execute on function public.set_rule(text, text, jsonb) to authenticated, service_role;
