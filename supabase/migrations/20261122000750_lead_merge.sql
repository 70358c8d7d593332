-- Rebuilding a lead's state from its activities, and merging a provisional lead (an unknown
-- WhatsApp number) into the real one, activities and alerts included.

-- Indexes -----------------------------------------------------------------------------------------

-- Alerts answered by an activity, found again if that activity turns out not to count (a failed send).
create index idx_max_alerts_resolved_by_activity
  on public.max_alerts (resolved_by_activity) where resolved_by_activity is not null;

-- Functions ---------------------------------------------------------------------------------------

/**
 * Recompute a lead's state from the activities that count as contact, and its due times from
 * the tenant's rules. For the rare changes that invalidate the running state (a send that failed
 * after it was counted, a merge); ingest keeps the state up to date incrementally instead.
 */
create function public.refresh_lead_state(p_tenant text, p_lead_id text) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_rules record;
begin
  select * into v_rules from public.rule_thresholds(p_tenant);

  insert into public.lead_state (tenant_id, lead_id, entered_at) values (p_tenant, p_lead_id, now())
  on conflict do nothing;

  update public.lead_state s set
    entered_at        = least(s.entered_at, a.first_at),
    last_activity_at  = a.last_at,
    last_inbound_at   = a.last_in,
    last_outbound_at  = a.last_out,
    no_contact_due_at = coalesce(a.last_at, s.entered_at) + v_rules.no_contact,
    stale_due_at      = coalesce(a.last_at, s.entered_at) + v_rules.stale,
    high_value_due_at = case when s.high_value then coalesce(a.last_at, s.entered_at) + v_rules.high_value end,
    no_reply_due_at   = case when a.last_out > coalesce(a.last_in, '-infinity') then a.last_out + v_rules.no_reply end
  from (
    select min(x.occurred_at) as first_at, max(x.occurred_at) as last_at,
           max(x.occurred_at) filter (where x.direction = 'in') as last_in,
           max(x.occurred_at) filter (where x.direction = 'out') as last_out
    from public.lead_activities x
    where x.tenant_id = p_tenant and x.lead_id = p_lead_id and public.counts_as_contact(x.status)
  ) a
  where s.tenant_id = p_tenant and s.lead_id = p_lead_id;
end
$$;
grant execute on function public.refresh_lead_state(text, text) to service_role;

/**
 * Move everything of lead `p_from` (activities, alerts, history) to lead `p_into` and forget
 * `p_from`. Where both have an active alert of a type, the one moved in is superseded. The caller
 * refreshes `p_into`'s state afterwards.
 */
create function public.merge_lead(p_tenant text, p_from text, p_into text) returns void
language plpgsql
set search_path = ''
as $$
begin
  update public.max_alerts f
  set resolved_at = now(), resolved_by = 'system', resolution = 'superseded'
  where f.tenant_id = p_tenant and f.lead_id = p_from and f.resolved_at is null
    and exists (select from public.max_alerts t
                where t.tenant_id = p_tenant and t.lead_id = p_into and t.type = f.type and t.resolved_at is null);
  update public.lead_activities set lead_id = p_into where tenant_id = p_tenant and lead_id = p_from;
  update public.max_alerts set lead_id = p_into where tenant_id = p_tenant and lead_id = p_from;
  update public.alert_events set lead_id = p_into where tenant_id = p_tenant and lead_id = p_from;
  delete from public.lead_state where tenant_id = p_tenant and lead_id = p_from;
  delete from public.leads where tenant_id = p_tenant and lead_id = p_from;
end
$$;
grant execute on function public.merge_lead(text, text, text) to service_role;
