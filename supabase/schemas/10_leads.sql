-- Leads: the directory, each lead's state (last activity either way, the due times of the
-- time-based rules), and who may see which lead.

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Tables ------------------------------------------------------------------------------------------

create table public.leads (
  tenant_id         text not null,
  lead_id           text not null,
  name              text,
  email             text,
  phone             text,                              -- E.164 (+33612345678); matches WhatsApp senders
  owner_id          text,                              -- the user (JWT `sub`) who owns the lead
  value             numeric(14, 2),                    -- expected deal value, in `currency`
  currency          text not null default 'EUR',
  preferred_channel public.channel,
  provisional       boolean not null default false,  -- created from an unknown WhatsApp number; merged later
  created_at        timestamptz not null default now(),
  updated_at        timestamptz not null default now(),
  constraint leads_pkey primary key (tenant_id, lead_id),
  constraint leads_phone_is_e164 check (phone ~ '^\+[1-9][0-9]{6,14}$'),
  constraint leads_currency_is_iso check (currency ~ '^[A-Z]{3}$'),
  constraint leads_value_not_negative check (value >= 0)
);

create table public.lead_state (
  tenant_id          text not null,
  lead_id            text not null,
  entered_at         timestamptz not null,   -- first known (directory entry or first activity): silence starts here
  last_activity_at   timestamptz,            -- latest occurred_at of an activity that counts as contact, either way
  last_inbound_at    timestamptz,
  last_outbound_at   timestamptz,
  high_value         boolean not null default false,  -- value >= the tenant's HighValueRisk threshold
  -- When the sweep must next judge each time-based rule for this lead (null: nothing pending).
  -- Set by log_activity and upsert_leads, moved on by sweep_alerts, cleared by a manual resolve.
  no_contact_due_at  timestamptz,
  no_reply_due_at    timestamptz,
  stale_due_at       timestamptz,
  high_value_due_at  timestamptz,
  next_due_at        timestamptz generated always as
                       (least(no_contact_due_at, no_reply_due_at, stale_due_at, high_value_due_at)) stored,
  preferred_channel  public.channel,      -- the directory's, kept in step by upsert_leads (comment below)
  constraint lead_state_pkey primary key (tenant_id, lead_id)
)
-- Real life: let autovacuum clear lead_state after a big sweep rather than at 20 % of the table.
with (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000);

comment on column public.lead_state.preferred_channel is
  'The directory''s preferred channel (leads.preferred_channel), kept in step by upsert_leads: what PreferredChannel falls back on.';

create unique index leads_phone_unique on public.leads (tenant_id, phone) where phone is not null;

-- The sweep reads only the leads whose next due time has come.
create index idx_lead_state_next_due on public.lead_state (next_due_at) where next_due_at is not null;

-- An agent's own leads, found without reading the tenant's directory.
create index idx_leads_tenant_owner on public.leads (tenant_id, owner_id);

-- A lead's owner read from the index alone: the analytics look up the owner of each event's lead
-- (a day's events and those since the open day's last fold), without a page of the directory each.
create index idx_leads_tenant_lead_owner on public.leads (tenant_id, lead_id) include (owner_id);

-- Inbound email → lead, by address, case-insensitively.
create index idx_leads_tenant_email on public.leads (tenant_id, lower(email)) where email is not null;

-- Grants and row-level security -------------------------------------------------------------------

grant select on table public.leads to authenticated;
grant select, insert, update, delete on table public.leads to service_role;
grant select on table public.lead_state to authenticated;
grant select, insert, update, delete on table public.lead_state to service_role;

alter table public.leads enable row level security;
alter table public.lead_state enable row level security;

-- Policies ----------------------------------------------------------------------------------------

/** The leads an agent owns in their tenant (none for any other role: they see all or nothing). */
create or replace function public.owned_leads() returns setof text
language sql stable
as $$
  select l.lead_id
  from public.leads l
  where (select public.current_app_role()) = 'agent'
    and l.tenant_id = (select public.current_tenant())
    and l.owner_id = (select auth.jwt()) ->> 'sub'
$$;
grant execute on function public.owned_leads() to authenticated, service_role;

/**
 * May the caller see this lead (and its activities, state and alerts)? The service and platform
 * staff: any. Admins and managers: any lead of their tenant. Agents: the leads they own. Anyone
 * else: none. Inlined into each policy, its parts evaluated once per query.
 */
create or replace function public.can_see_lead(p_tenant text, p_lead_id text) returns boolean
language sql stable
as $$
  select (select public.sees_all_tenants())
      or (p_tenant = (select public.current_tenant())
          and ((select public.sees_whole_tenant()) or p_lead_id in (select public.owned_leads())))
$$;
grant execute on function public.can_see_lead(text, text) to authenticated, service_role;

create policy "Leads are visible to staff of their tenant and to the agent who owns them" on public.leads
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant())
             and ((select public.sees_whole_tenant())
                  or (owner_id = (select auth.jwt()) ->> 'sub' and (select public.current_app_role()) = 'agent'))));

create policy "Lead state is visible to whoever may see the lead" on public.lead_state
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant())
             and ((select public.sees_whole_tenant()) or lead_id in (select public.owned_leads()))));

-- Functions ---------------------------------------------------------------------------------------

/**
 * Stop unless the caller may act in this tenant with one of these roles (403). The service and
 * platform staff may act in any tenant. The first statement of every function that writes.
 */
create or replace function public.assert_acts_in(p_tenant text, p_roles text[] default array['admin', 'manager', 'agent'])
returns void
language plpgsql stable
set search_path = ''
as $$
begin
  if (select public.sees_all_tenants()) then
    return;
  end if;
  if p_tenant is distinct from (select public.current_tenant())
     or not coalesce((select public.current_app_role()) = any (p_roles), false) then
    perform public.raise_error('LW403', 'not allowed in this tenant');
  end if;
end
$$;
grant execute on function public.assert_acts_in(text, text[]) to authenticated, service_role;

/**
 * Recompute a lead's state from the activities that count as contact, and its due times from
 * the tenant's rules. For the rare changes that invalidate the running state (a send that failed
 * after it was counted, a merge); ingest keeps the state up to date incrementally instead.
 */
create or replace function public.refresh_lead_state(p_tenant text, p_lead_id text) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_rules  record;
  v_clocks record;
begin
  select * into v_rules from public.rule_thresholds(p_tenant);
  select * into v_clocks from public.rule_clocks(p_tenant);

  insert into public.lead_state (tenant_id, lead_id, entered_at) values (p_tenant, p_lead_id, now())
  on conflict do nothing;

  update public.lead_state s set
    entered_at        = least(s.entered_at, a.first_at),
    last_activity_at  = a.last_at,
    last_inbound_at   = a.last_in,
    last_outbound_at  = a.last_out,
    no_contact_due_at = public.clock_add(v_clocks.calendar, v_clocks.business_no_contact,
                                         coalesce(a.last_at, s.entered_at), v_rules.no_contact),
    stale_due_at      = public.clock_add(v_clocks.calendar, v_clocks.business_stale,
                                         coalesce(a.last_at, s.entered_at), v_rules.stale),
    high_value_due_at = case when s.high_value then public.clock_add(v_clocks.calendar, v_clocks.business_high_value, coalesce(a.last_at, s.entered_at),
                                                                   v_rules.high_value) end,
    no_reply_due_at   = case when a.last_out > coalesce(a.last_in, '-infinity')
                             then public.clock_add(v_clocks.calendar, v_clocks.business_no_reply, a.last_out, v_rules.no_reply) end
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

/** A lead as the API shows it. */
create or replace function public.lead_json(p_lead public.leads) returns jsonb
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
 * number) or its email address (an unknown sender of an email, compared case-insensitively) takes
 * it over, with its activities and alerts; the phone of another real lead is a conflict. Users:
 * admins and managers of the tenant only.
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
  v_clocks     record;
  v_result     jsonb;
  v_merge      record;
  v_merged     text[] := '{}'::text[];
  v_now        constant timestamptz := now();
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
  select * into v_clocks from public.rule_clocks(p_tenant);

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
      provisional = false, updated_at = v_now  -- now(): Citus takes no STABLE function here
    returning l.*,
      coalesce(l.value >= v_high_value.min_value and l.currency = v_high_value.currency, false) as high_value
  ),
  watched as (
    insert into public.lead_state as s
      (tenant_id, lead_id, entered_at, high_value, preferred_channel, no_contact_due_at, stale_due_at, high_value_due_at)
    select p_tenant, u.lead_id, now(), u.high_value, u.preferred_channel,
           public.clock_add(v_clocks.calendar, v_clocks.business_no_contact, now(), v_no_contact),
           public.clock_add(v_clocks.calendar, v_clocks.business_stale, now(), v_stale),
           case when u.high_value
                then public.clock_add(v_clocks.calendar, v_clocks.business_high_value, now(), v_high_value.threshold) end
    from upserted u
    on conflict (tenant_id, lead_id) do update set
      high_value = excluded.high_value,
      preferred_channel = excluded.preferred_channel,
      high_value_due_at = case
        when not excluded.high_value then null
        when s.high_value then s.high_value_due_at
        else public.clock_add(v_clocks.calendar, v_clocks.business_high_value, coalesce(s.last_activity_at, s.entered_at),
                              v_high_value.threshold)
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
grant execute on function public.upsert_leads(text, jsonb) to authenticated, service_role;

/**
 * Read the due-time index up to `p_now` row by row, so that the entries the last sweep left
 * behind are marked dead in the index (the scan must visit the heap: not a bitmap or index-only
 * scan). Run after the sweep's transaction has committed, never inside it. Answers how many leads
 * are still due.
 */
create or replace function public.prune_due_index(p_now timestamptz default now()) returns bigint
language sql
set search_path = ''
set enable_seqscan = off
set enable_bitmapscan = off
set enable_indexonlyscan = off
as $$
  select count(*) from public.lead_state s where s.next_due_at <= p_now
$$;
grant execute on function public.prune_due_index(timestamptz) to service_role;
