-- Row-level security that costs once per query, not once per row.
--
-- The policies of lead_state, lead_activities, max_alerts and alert_events called
-- `can_see_lead(tenant_id, lead_id)`. Postgres never inlines that function (its body has
-- sub-selects), so it ran once per row read: each call re-evaluated the caller's role and, for an
-- agent, `owned_leads()` (a scan of the tenant's leads). Measured on 20,000 alert events of a
-- tenant with 100,000 leads: 11 ms per row for an agent, so minutes per query. The same test
-- written in the policy itself is planned with the query: the caller's role and tenant once
-- (InitPlans), the agent's own leads once (a hashed SubPlan, read through the index below).
-- `can_see_lead` stays for the functions that test one lead.

-- Indexes -----------------------------------------------------------------------------------------

-- An agent's own leads, found without reading the tenant's directory.
create index idx_leads_tenant_owner on public.leads (tenant_id, owner_id);

-- Policies ----------------------------------------------------------------------------------------

drop policy "Lead state is visible to whoever may see the lead" on public.lead_state;
create policy "Lead state is visible to whoever may see the lead" on public.lead_state
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant())
             and ((select public.sees_whole_tenant()) or lead_id in (select public.owned_leads()))));

drop policy "Activities are visible to whoever may see the lead" on public.lead_activities;
create policy "Activities are visible to whoever may see the lead" on public.lead_activities
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant())
             and ((select public.sees_whole_tenant()) or lead_id in (select public.owned_leads()))));

drop policy "Alerts are visible to whoever may see the lead" on public.max_alerts;
create policy "Alerts are visible to whoever may see the lead" on public.max_alerts
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant())
             and ((select public.sees_whole_tenant()) or lead_id in (select public.owned_leads()))));

drop policy "Alert history is visible to whoever may see the lead" on public.alert_events;
create policy "Alert history is visible to whoever may see the lead" on public.alert_events
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant())
             and ((select public.sees_whole_tenant()) or lead_id in (select public.owned_leads()))));
