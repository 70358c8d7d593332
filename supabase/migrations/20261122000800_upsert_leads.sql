-- The lead directory: adding and updating leads, which also starts their silence clock.

-- Functions ---------------------------------------------------------------------------------------

/** A lead as the API shows it. */
create function public.lead_json(p_lead public.leads) returns jsonb
language sql immutable
as $$
  select jsonb_build_object(
    'lead_id', p_lead.lead_id, 'name', p_lead.name, 'email', p_lead.email, 'phone', p_lead.phone,
    'owner_id', p_lead.owner_id, 'value', p_lead.value, 'currency', p_lead.currency,
    'preferred_channel', p_lead.preferred_channel, 'provisional', p_lead.provisional, 'created_at', p_lead.created_at,
    'updated_at', p_lead.updated_at)
$$;
grant execute on function public.lead_json(public.leads) to authenticated, service_role;

/**
 * Add or update leads (a JSON array of {lead_id, name, email, phone, owner_id, value, currency,
 * preferred_channel}). A field left out or null keeps its stored value. A new lead starts its
 * silence clock now; a lead whose value crosses the tenant's HighValueRisk threshold starts (or
 * stops) being watched for it. A lead given the phone of a provisional lead (an unknown WhatsApp
 * number) takes it over, with its activities and alerts; the phone of another real lead is a
 * conflict. Users: admins and managers of the tenant only.
 */
create function public.upsert_leads(p_tenant text, p_leads jsonb) returns jsonb
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
      (tenant_id, lead_id, entered_at, high_value, no_contact_due_at, stale_due_at, high_value_due_at)
    select p_tenant, u.lead_id, now(), u.high_value, now() + v_no_contact, now() + v_stale,
           case when u.high_value then now() + v_high_value.threshold end
    from upserted u
    on conflict (tenant_id, lead_id) do update set
      high_value = excluded.high_value,
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
grant execute on function public.upsert_leads(text, jsonb) to authenticated, service_role;
