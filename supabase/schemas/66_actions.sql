-- Actions: what running an alert's suggested action needs, whatever its channel (the caller decides
-- which channel is used and whether it can be, knowing what is configured).

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Functions ---------------------------------------------------------------------------------------

/**
 * What running an alert's suggested action needs: the action as the alert carries it, the channel
 * it names (PreferredChannel's), the lead (its phone, email and preferred channel), and the text and
 * subject of the follow-up in the tenant's language, {name} filled in. Which channel is used, and
 * whether it can be, is decided by the caller, which knows what is configured. Runs as the caller:
 * an alert they may not see is not found.
 */
create function public.prepare_action(p_tenant text, p_alert_id uuid)
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
  select * into v_alert from public.max_alerts a
  where a.id = p_alert_id and a.tenant_id = p_tenant and a.resolved_at is null;
  if not found then
    perform public.raise_error('LW404', 'alert not found', 'id');
  end if;
  select * into v_rule from public.rules_for(p_tenant) r where r.type = v_alert.type;
  select * into v_lead from public.leads l where l.tenant_id = p_tenant and l.lead_id = v_alert.lead_id;
  v_text := coalesce(v_rule.action -> 'text' ->> v_rule.locale, v_rule.action -> 'text' ->> 'fr');
  return jsonb_build_object(
    'alert_id', v_alert.id,
    'alert_type', v_alert.type,
    'suggested_action', v_alert.suggested_action,
    'channel', v_alert.channel,
    'lead', case when v_lead.lead_id is null then jsonb_build_object('lead_id', v_alert.lead_id)
                 else public.lead_json(v_lead) end,
    'text', replace(v_text, ' {name}', coalesce(' ' || v_lead.name, '')),
    'subject', coalesce(v_rule.action -> 'subject' ->> v_rule.locale, v_rule.action -> 'label' ->> v_rule.locale,
                        v_rule.action -> 'label' ->> 'fr'));
end
$$;
revoke all on function public.prepare_action(text, uuid) from public, anon, authenticated, service_role;
grant execute on function public.prepare_action(text, uuid) to authenticated, service_role;
