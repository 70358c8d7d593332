-- Every suggested action runs something real.
--
-- * A call whose outcome is "no answer" (status `no_answer`) is kept on the lead's timeline but is not
--   contact: it answers no alert and starts no silence clock, like a send that failed. "Reached"
--   (`answered`) and "voicemail" (`voicemail`: we left a message, as a sent one) are contact.
-- * PreferredChannel's default action (`switch_channel`) sends a follow-up on the lead's channel: it
--   gets the text it sends, as the other follow-ups have.
-- * The active alerts carry the lead's phone and preferred channel, so that whether an action can run is known before any
--   click, and a call can dial it.
-- * A tenant may choose a rule's action (`set_rule`'s `action`, its `action_label`, and with
--   20261207000400_email.sql's `action_subject`), e.g. email follow-ups: one set of rule fields.
-- * `prepare_action`: what running an alert's action needs (the action, the lead, the text and the
--   email's subject in the tenant's language, the tenant's From), whatever its channel; an alert
--   already resolved is not acted on again (409). `prepare_whatsapp` stays for POST /api/whatsapp/send,
--   `prepare_email` for POST /api/email/send.
-- (counts_as_contact and set_rule were redefined by 20261207000400_email.sql too: the definitions here
-- keep both changes.)
-- * `prepare_email` (20261207000400_email.sql) prepares the chat assistant's email only: an alert's
--   email is prepared by `prepare_action`, as every action's follow-up, so its alert argument goes.

/**
 * Does an activity with this status count as contact? A send that failed reached nobody, an
 * automatic reply (out of office, RFC 3834) is nobody answering, and an unanswered call
 * (`no_answer`) reached nobody: all are stored and shown in the timeline, but they move no
 * silence, answer no alert and start no cycle.
 */
create or replace function public.counts_as_contact(p_status text) returns boolean
language sql immutable
as $$
  select p_status is null or lower(p_status) not in ('failed', 'noaccount', 'notingroup', 'auto_reply', 'no_answer')
$$;

update public.alert_rules
set action = action || '{"text": {
  "fr": "Bonjour {name}, je vous recontacte par ici, puisque c''est le canal que vous préférez. Où en est votre projet ?",
  "en": "Hello {name}, reaching out here since this is the channel you prefer. How is your project going?"}}'::jsonb
where tenant_id = '*' and type = 'PreferredChannel' and not action ? 'text';

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
grant execute on function public.list_active_alerts(text, integer, jsonb, text, text, text, text)
  to authenticated, service_role;

/**
 * What running an alert's suggested action needs: the action as the alert carries it, the channel
 * it names (PreferredChannel's), the lead (its phone, email and preferred channel), the text and,
 * for an email, the subject of the follow-up in the tenant's language ({name} filled in; a tenant's
 * rule without a subject takes the default's, else the action's label), and the tenant's From
 * address (null: the deployment's default). Which channel is used, and whether it can be, is decided
 * by the caller, which knows what is configured. An alert already resolved is not acted on again
 * (409): a retried action does not send twice. Runs as the caller: an alert they may not see is not
 * found.
 */
create function public.prepare_action(p_tenant text, p_alert_id uuid)
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
  select * into v_alert from public.max_alerts a where a.id = p_alert_id and a.tenant_id = p_tenant;
  if not found then
    perform public.raise_error('LW404', 'alert not found', 'id');
  end if;
  if v_alert.resolved_at is not null then
    perform public.raise_error('LW409', 'the alert is already resolved: its action is not run again', 'id');
  end if;
  select * into v_rule from public.rules_for(p_tenant) r where r.type = v_alert.type;
  select * into v_default from public.alert_rules r where r.tenant_id = '*' and r.type = v_alert.type;
  select * into v_lead from public.leads l where l.tenant_id = p_tenant and l.lead_id = v_alert.lead_id;
  v_text := coalesce(v_rule.action -> 'text' ->> v_rule.locale, v_rule.action -> 'text' ->> 'fr');
  v_subject := coalesce(v_rule.action -> 'subject' ->> v_rule.locale, v_default.action -> 'subject' ->> v_rule.locale,
                        v_rule.action -> 'subject' ->> 'fr', v_default.action -> 'subject' ->> 'fr',
                        v_rule.action -> 'label' ->> v_rule.locale, v_rule.action -> 'label' ->> 'fr');
  return jsonb_build_object(
    'alert_id', v_alert.id,
    'alert_type', v_alert.type,
    'suggested_action', v_alert.suggested_action,
    'channel', v_alert.channel,
    'lead', case when v_lead.lead_id is null then jsonb_build_object('lead_id', v_alert.lead_id)
                 else public.lead_json(v_lead) end,
    'from', (select s.from_address from public.email_senders s where s.tenant_id = p_tenant),
    'text', replace(v_text, ' {name}', coalesce(' ' || v_lead.name, '')),
    'subject', replace(v_subject, ' {name}', coalesce(' ' || v_lead.name, '')));
end
$$;
revoke all on function public.prepare_action(text, uuid) from public, anon, authenticated, service_role;
grant execute on function public.prepare_action(text, uuid) to authenticated, service_role;

drop function public.prepare_email(text, uuid, text);

/**
 * What an email the chat assistant sends needs (POST /api/email/send): the lead, with its address,
 * and the tenant's From address (null: the deployment's default). An alert's email is prepared by
 * `prepare_action`, as every action's follow-up. Runs as the caller: a lead they may not see is not
 * found.
 */
create function public.prepare_email(p_tenant text, p_lead_id text)
returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_lead public.leads;
begin
  perform public.assert_acts_in(p_tenant);
  select * into v_lead from public.leads l where l.tenant_id = p_tenant and l.lead_id = p_lead_id;
  if not found then
    perform public.raise_error('LW404', 'lead not found in the directory', 'leadId');
  end if;
  if v_lead.email is null then
    perform public.raise_error('LW422', 'the lead has no email address', 'email');
  end if;
  return jsonb_build_object(
    'lead', public.lead_json(v_lead),
    'from', (select s.from_address from public.email_senders s where s.tenant_id = p_tenant));
end
$$;
grant execute on function public.prepare_email(text, text) to authenticated, service_role;

/**
 * Change the tenant's rule of one type: the fields present in `p_changes` (enabled, threshold,
 * severity, escalate_after, escalated_severity, min_count, min_value, currency, locale, messages
 * and action_text per locale — merged into what is in force —, overdue_after, and the suggested
 * action: `action` (send_whatsapp, send_email, switch_channel, call_lead; its label becomes the
 * action's default), `action_label` and `action_subject` (an email's subject) per locale, merged)
 * replace those of the rule in force, into the tenant's own row. Validated: a threshold is
 * positive, a ladder rises (later and higher), the messages include the rule's locale, a WhatsApp
 * or email follow-up has a text in it. Takes effect at once for every lead of the tenant: stored due times
 * are recomputed, and a disabled rule's active alerts resolved (`rule`). Admins of the tenant and
 * platform staff only.
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
grant execute on function public.set_rule(text, text, jsonb) to authenticated, service_role;
