-- Grants that do not trust the platform's defaults. On hosted Supabase, `public` carries default
-- privileges that give anon, authenticated and service_role ALL on every new table, view, sequence
-- and function: row-level security still filtered rows, but TRUNCATE bypasses it and service_role
-- could rewrite the append-only history. This migration takes back whatever those defaults granted
-- on the objects the earlier migrations created and grants exactly what each role needs; it stops
-- the defaults for objects created from now on; and it makes alert_events refuse UPDATE, DELETE and
-- TRUNCATE for everyone, owner included, outside the owner-run maintenance functions.
-- The sweep's work_mem is sized for the smallest Supabase instance (1 GB of RAM).

-- Default privileges ------------------------------------------------------------------------------

-- For what the migrating role creates later: nothing for anyone until a migration grants it.
alter default privileges in schema public revoke all on tables from public, anon, authenticated, service_role;
alter default privileges in schema public revoke all on sequences from public, anon, authenticated, service_role;
alter default privileges in schema public revoke all on functions from public, anon, authenticated, service_role;

-- Tables, view, sequence --------------------------------------------------------------------------

revoke all on table public.leads, public.lead_state, public.lead_activities, public.alert_rules,
  public.max_alerts, public.alert_events, public.alert_counts, public.active_alerts
  from public, anon, authenticated, service_role;
revoke all on sequence public.alert_events_id_seq from public, anon, authenticated, service_role;

-- Users read through row-level security; the service writes what the API writes.
grant select on table public.leads, public.lead_state, public.lead_activities, public.alert_rules,
  public.max_alerts, public.alert_events, public.alert_counts, public.active_alerts
  to authenticated, service_role;
grant insert, update, delete on table public.leads, public.lead_state, public.lead_activities,
  public.alert_rules, public.max_alerts to service_role;
grant insert on table public.alert_events to service_role;  -- history is appended, never rewritten

-- Functions ---------------------------------------------------------------------------------------

revoke all on function
  public.current_tenant(), public.current_app_role(), public.is_trusted_caller(), public.sees_all_tenants(),
  public.sees_whole_tenant(), public.raise_error(text, text, text), public.uuid_v7(), public.ping(),
  public.owned_leads(), public.can_see_lead(text, text), public.assert_acts_in(text, text[]),
  public.record_created_alerts(), public.record_changed_alerts(), public.record_deleted_alerts(),
  public.rules_for(text), public.rule_thresholds(text), public.counts_as_contact(text),
  public.activity_json(public.lead_activities),
  public.log_activity(text, text, text, text, text, text, jsonb, timestamptz, text),
  public.sweep_alerts(text, timestamptz), public.alert_json(public.max_alerts, text, text),
  public.list_active_alerts(text, integer, jsonb, text, text, text), public.resolve_alert(text, uuid, text),
  public.list_lead_activities(text, text, integer, jsonb), public.refresh_lead_state(text, text),
  public.merge_lead(text, text, text), public.lead_json(public.leads), public.upsert_leads(text, jsonb),
  public.log_activity_by_phone(text, text, text, text, text, text, text, text, jsonb, timestamptz, text, boolean),
  public.status_rank(text), public.set_activity_status(text, text, text, text),
  public.prepare_whatsapp(text, uuid, text)
  from public, anon, authenticated, service_role;

-- anon: only the question row-level security asks of every caller.
grant execute on function public.is_trusted_caller() to anon, authenticated, service_role;
-- Signed-in users: their reads and writes (each checks the caller first) and the helpers these use.
grant execute on function
  public.current_tenant(), public.current_app_role(), public.sees_all_tenants(), public.sees_whole_tenant(),
  public.raise_error(text, text, text), public.uuid_v7(), public.owned_leads(), public.can_see_lead(text, text),
  public.assert_acts_in(text, text[]), public.rules_for(text), public.rule_thresholds(text),
  public.counts_as_contact(text), public.activity_json(public.lead_activities),
  public.log_activity(text, text, text, text, text, text, jsonb, timestamptz, text),
  public.alert_json(public.max_alerts, text, text), public.list_active_alerts(text, integer, jsonb, text, text, text),
  public.resolve_alert(text, uuid, text), public.list_lead_activities(text, text, integer, jsonb),
  public.lead_json(public.leads), public.upsert_leads(text, jsonb), public.prepare_whatsapp(text, uuid, text)
  to authenticated, service_role;
-- The service only: health, the sweep, the WhatsApp paths, rebuilding a lead's state.
grant execute on function
  public.ping(), public.sweep_alerts(text, timestamptz), public.refresh_lead_state(text, text),
  public.log_activity_by_phone(text, text, text, text, text, text, text, text, jsonb, timestamptz, text, boolean),
  public.status_rank(text), public.set_activity_status(text, text, text, text)
  to service_role;
-- record_*_alerts (triggers) and merge_lead (called by upsert_leads, as the owner): nobody else.

/**
 * alert_events is append-only: refuse UPDATE, DELETE and TRUNCATE, whoever asks (the owner too),
 * unless an owner-run maintenance function (merge_lead) has set the transaction-local
 * `leadwatch.history_maintenance` to 'on'. Privileges already keep every API role out; this
 * catches the owner's own mistakes and any grant added by hand later.
 */
create function public.refuse_history_change() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if coalesce(current_setting('leadwatch.history_maintenance', true), '') <> 'on' then
    raise exception using errcode = 'LW403',
      message = format('alert_events is append-only: %s refused', tg_op),
      hint = 'history is only rewritten by owner-run maintenance functions (merge_lead)';
  end if;
  return null;
end
$$;

create trigger alert_events_append_only before update or delete or truncate on public.alert_events
  for each statement execute function public.refuse_history_change();

/**
 * Move everything of lead `p_from` (activities, alerts, history) to lead `p_into` and forget
 * `p_from`. Where both have an active alert of a type, the one moved in is superseded. The caller
 * refreshes `p_into`'s state afterwards. A maintenance function: it runs as the owner and is the
 * one place allowed to rewrite alert_events (for this transaction's statement only).
 */
create or replace function public.merge_lead(p_tenant text, p_from text, p_into text) returns void
language plpgsql
security definer  -- rewrites alert_events' lead ids, which no API role may do
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
  perform set_config('leadwatch.history_maintenance', 'on', true);
  update public.alert_events set lead_id = p_into where tenant_id = p_tenant and lead_id = p_from;
  perform set_config('leadwatch.history_maintenance', 'off', true);
  delete from public.lead_state where tenant_id = p_tenant and lead_id = p_from;
  delete from public.leads where tenant_id = p_tenant and lead_id = p_from;
end
$$;
revoke all on function public.merge_lead(text, text, text) from public, anon, authenticated, service_role;

-- The sweep on a 1 GB instance ---------------------------------------------------------------------

-- 20261122001000 gave the sweep 256MB per sort or hash (twice that for a hash, hash_mem_multiplier):
-- on Supabase's smallest instance (1 GB of RAM, a quarter of it shared buffers) one big sweep could
-- take the memory the other connections need. 16MB keeps a sweep's few sort and hash nodes under
-- ~100MB in all; a big day's sweep spills its largest sets to temporary files instead (README,
-- "Performance"). Only the setting changes: the body stays 20261122001000's.
alter function public.sweep_alerts(text, timestamptz) set work_mem = '16MB';
