-- Actions: what running an alert's suggested action needs, whatever its channel (the caller decides
-- which channel is used and whether it can be, knowing what is configured).

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Functions ---------------------------------------------------------------------------------------

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
create or replace function public.prepare_action(p_tenant text, p_alert_id uuid)
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
