-- The baseline: the whole schema as supabase/schemas/ declares it, file after file in the order of
-- supabase/config.toml's `[db.migrations] schema_paths`.
--
-- The pre-release migrations (20261122000100_tenancy to 20261127000200_tenant_sweep_reads_its_tenant,
-- 40 files named after the changes that made them) were folded into this one file: nothing had been
-- deployed yet, so no database holds their history. From now on a change edits supabase/schemas/ and
-- adds a migration after this one (`supabase db diff -f <change>` writes it); tests/test_schema.py
-- keeps the two equal.

-- =================================================================================================
-- supabase/schemas/00_tenancy.sql
-- =================================================================================================

-- Tenancy: the vocabulary every other file uses (types, errors, ids), who the caller is, and
-- what each role may run by default.

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Types -------------------------------------------------------------------------------------------

create domain public.alert_type as text
  check (value in ('NoContact7d', 'NoReply3d', 'StaleLead30d', 'HighValueRisk', 'HotLead24h', 'PreferredChannel'));

create domain public.severity as text
  check (value in ('low', 'med', 'high'));

create domain public.channel as text
  check (value in ('whatsapp', 'email', 'call', 'other'));

-- Grants and row-level security -------------------------------------------------------------------

-- No function is executable by everyone: each one below grants execute to the roles that need it.
-- (PUBLIC's EXECUTE is a global default, so it is revoked globally; Supabase's grants to anon and
-- authenticated are defaults of the public schema.)
alter default privileges revoke execute on functions from public;

alter default privileges in schema public revoke execute on functions from anon, authenticated;

-- For what the migrating role creates later: nothing for anyone until a migration grants it.
alter default privileges in schema public revoke all on tables from public, anon, authenticated, service_role;

alter default privileges in schema public revoke all on sequences from public, anon, authenticated, service_role;

alter default privileges in schema public revoke all on functions from public, anon, authenticated, service_role;

-- Functions ---------------------------------------------------------------------------------------

/**
 * The tenant of the signed-in caller, read from the JWT's `app_metadata` (which only the service
 * can write), never from `user_metadata` (which the user can write).
 */
create or replace function public.current_tenant() returns text
language sql stable
as $$
  select nullif((select auth.jwt()) -> 'app_metadata' ->> 'tenant_id', '')
$$;
grant execute on function public.current_tenant() to authenticated, service_role;

/** The caller's leadwatch role (`platform_admin`, `admin`, `manager`, `agent`) from `app_metadata`. */
create or replace function public.current_app_role() returns text
language sql stable
as $$
  select nullif((select auth.jwt()) -> 'app_metadata' ->> 'role', '')
$$;
grant execute on function public.current_app_role() to authenticated, service_role;

/**
 * Is the caller trusted to name any tenant? The service (the `service_role` key through the REST
 * API, or a direct database connection, which carries no user claims) is; a user or anon is not.
 */
create or replace function public.is_trusted_caller() returns boolean
language sql stable
as $$
  select coalesce((select auth.jwt()) ->> 'role', 'service_role') not in ('anon', 'authenticated')
$$;
grant execute on function public.is_trusted_caller() to anon, authenticated, service_role;

/** Does the caller see every tenant? The service and platform staff do. */
create or replace function public.sees_all_tenants() returns boolean
language sql stable
as $$
  select (select public.is_trusted_caller()) or (select public.current_app_role()) = 'platform_admin'
$$;
grant execute on function public.sees_all_tenants() to authenticated, service_role;

/** Does the caller see every lead of their tenant? Admins and managers do; agents see their own. */
create or replace function public.sees_whole_tenant() returns boolean
language sql stable
as $$
  select (select public.current_app_role()) in ('admin', 'manager')
$$;
grant execute on function public.sees_whole_tenant() to authenticated, service_role;

/**
 * Raise one of leadwatch's errors. The SQLSTATE is the contract with Python (never the text):
 * LW404 not found, LW403 forbidden, LW409 conflict, LW422 invalid (detail names the field).
 * Volatile, as every function that raises: an immutable call with constant arguments may be
 * evaluated ahead of time (when a statement is planned, or checked), raising where nothing failed.
 */
create or replace function public.raise_error(p_code text, p_message text, p_detail text default null) returns void
language plpgsql volatile
set search_path = ''
as $$
begin
  raise exception using errcode = p_code, message = p_message, detail = coalesce(p_detail, '');
end
$$;
grant execute on function public.raise_error(text, text, text) to authenticated, service_role;

/**
 * A UUID whose first 48 bits are the creation time in milliseconds (version 7, RFC 9562), so
 * that rows inserted one after another land next to each other in their primary-key index
 * instead of on a random page. Plain SQL: PostgreSQL only has uuidv7() from version 18.
 */
create or replace function public.uuid_v7() returns uuid
language sql volatile
as $$
  select encode(
    set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                            placing substring(int8send((extract(epoch from clock_timestamp()) * 1000)::bigint) from 3)
                            from 1 for 6), 52, 1), 53, 1),
    'hex')::uuid
$$;
grant execute on function public.uuid_v7() to authenticated, service_role;

/** Does the database answer? What `GET /health` asks, through whichever store is configured. */
create or replace function public.ping() returns boolean
language sql stable
as $$
  select true
$$;
grant execute on function public.ping() to service_role;

/**
 * Refuse a page request leadwatch would not make: a limit outside 1..1000 (LW422 `limit`), or a
 * cursor that is not an object of exactly `p_keys` with values of their types — `r` a severity
 * rank 1..3, `c` and `o` times, `i` a UUID in canonical form (LW422 `cursor`).
 */
create or replace function public.check_page(p_limit integer, p_cursor jsonb, p_keys text[]) returns void
language plpgsql stable
set search_path = ''
as $$
begin
  if p_limit is null or p_limit not between 1 and 1000 then
    perform public.raise_error('LW422', 'limit must be between 1 and 1000', 'limit');
  end if;
  if p_cursor is null then
    return;
  end if;
  if jsonb_typeof(p_cursor) is distinct from 'object'
     or (select array_agg(k order by k) from jsonb_object_keys(p_cursor) k)
        is distinct from (select array_agg(k order by k) from unnest(p_keys) k)
     or (p_cursor ? 'r' and (p_cursor ->> 'r') not in ('1', '2', '3'))
     or (p_cursor ? 'i' and (jsonb_typeof(p_cursor -> 'i') <> 'string'
                             or (p_cursor ->> 'i') !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'))
     or exists (select from unnest(array['c', 'o']) k where p_cursor ? k and jsonb_typeof(p_cursor -> k) <> 'string')
  then
    perform public.raise_error('LW422', 'invalid cursor', 'cursor');
  end if;
  begin  -- a time's form is the one thing a pattern cannot settle: cast it here, where failing is ours to name
    perform (p_cursor ->> k)::timestamptz from unnest(array['c', 'o']) k where p_cursor ? k;
  exception when others then
    perform public.raise_error('LW422', 'invalid cursor', 'cursor');
  end;
end
$$;
grant execute on function public.check_page(integer, jsonb, text[]) to authenticated, service_role;

-- =================================================================================================
-- supabase/schemas/10_leads.sql
-- =================================================================================================

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
 * number) takes it over, with its activities and alerts; the phone of another real lead is a
 * conflict. Users: admins and managers of the tenant only.
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

-- =================================================================================================
-- supabase/schemas/20_activities.sql
-- =================================================================================================

-- Activities: the timeline of every interaction with a lead, and logging them (one or many at a
-- time), which keeps the lead state and the ingest rules in step.

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Types -------------------------------------------------------------------------------------------

/** One activity to log, as a row: `ord` is its place in the caller's list. */
create type public.activity_in as (
  ord             integer,
  lead_id         text,
  channel         public.channel,
  direction       text,
  status          text,
  message_snippet text,
  meta            jsonb,
  occurred_at     timestamptz,
  external_id     text
);

/**
 * What logging an activity does to its lead's alerts, judged before any alert is written: the
 * alerts to raise. (What resolving reads is the alerts' keys and the answering activity by lead,
 * kept beside the verdicts.)
 */
create type public.ingest_verdict as (
  lead_id      text,
  hot_count    integer,      -- HotLead24h to raise: the burst's size and start
  hot_since    timestamptz,
  raise_hot    boolean,
  pref_channel text,         -- PreferredChannel to raise: the lead's channel, since our streak began
  pref_since   timestamptz,
  raise_pref   boolean
);

-- Tables ------------------------------------------------------------------------------------------

create table public.lead_activities (
  id              uuid not null default public.uuid_v7(),  -- time-ordered: inserts append to the key index
  tenant_id       text not null,
  lead_id         text not null,
  channel         public.channel not null,
  direction       text not null,
  status          text default 'sent',
  message_snippet text,                                   -- at most 100 characters
  meta            jsonb,
  created_at      timestamptz default now(),              -- when leadwatch recorded it
  occurred_at     timestamptz not null default now(),     -- when it happened: what the rules judge by
  external_id     text,                                   -- provider message id; unique per tenant and channel
  constraint lead_activities_pkey primary key (tenant_id, id),  -- tenant first: every key leads with it
  constraint lead_activities_direction_known check (direction in ('in', 'out')),
  constraint lead_activities_snippet_short check (char_length(message_snippet) <= 100)
);

create index idx_lead_activities_created on public.lead_activities (created_at desc);

-- A replayed webhook or a retried call is stored once.
create unique index idx_lead_activities_external_id
  on public.lead_activities (tenant_id, channel, external_id) where external_id is not null;

-- A tenant's activities in the order they happened, page after page.
create index idx_lead_activities_tenant_occurred on public.lead_activities (tenant_id, occurred_at, id);

create index idx_lead_activities_tenant_lead
  on public.lead_activities (tenant_id, lead_id, occurred_at desc, id desc) include (direction, status, channel);

-- Grants and row-level security -------------------------------------------------------------------

grant select on table public.lead_activities to authenticated;
grant select, insert, update, delete on table public.lead_activities to service_role;

alter table public.lead_activities enable row level security;

-- Policies ----------------------------------------------------------------------------------------

create policy "Activities are visible to whoever may see the lead" on public.lead_activities
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant())
             and ((select public.sees_whole_tenant()) or lead_id in (select public.owned_leads()))));

-- Functions ---------------------------------------------------------------------------------------

/** Does an activity with this status count as contact? A send that failed reached nobody. */
create or replace function public.counts_as_contact(p_status text) returns boolean
language sql immutable
as $$
  select p_status is null or lower(p_status) not in ('failed', 'noaccount', 'notingroup')
$$;
grant execute on function public.counts_as_contact(text) to authenticated, service_role;

/**
 * An activity as the API shows it. Stable, as what it does is (timestamps print in the session's
 * time zone): an immutable function whose body is only stable is never inlined, so each answer
 * would cost a function call of its own.
 */
create or replace function public.activity_json(p_activity public.lead_activities) returns jsonb
language sql stable
as $$
  select jsonb_build_object(
    'id', p_activity.id, 'tenant_id', p_activity.tenant_id, 'lead_id', p_activity.lead_id,
    'channel', p_activity.channel, 'direction', p_activity.direction, 'status', p_activity.status,
    'message_snippet', p_activity.message_snippet, 'meta', p_activity.meta,
    'occurred_at', p_activity.occurred_at, 'created_at', p_activity.created_at,
    'external_id', p_activity.external_id)
$$;
grant execute on function public.activity_json(public.lead_activities) to authenticated, service_role;

/**
 * Log one activity of a lead and apply the rules it triggers.
 *
 * Idempotent on (tenant, channel, external id): a replay returns the stored activity with
 * `duplicate: true` and changes nothing. Judged by `occurred_at`: an event older than what we
 * already know never moves "last activity" back, and an inbound that occurred before our last
 * outbound does not answer it. A send that failed is stored but is not contact. Users log only
 * in their tenant, and agents only for the leads they own.
 *
 * The ingest-time rules are judged here, reading only the lead's most recent activities:
 * - HotLead24h: the lead's last `min_count` inbound all occurred within the rule's window (24 h)
 *   before now, after our last outbound. Answered by an outbound that occurred after the first of them.
 *   Read only when an earlier inbound may be in the window: the lead's `last_inbound_at` is never
 *   older than its newest stored inbound (ingest moves it forward, `refresh_lead_state` sets it to
 *   the newest), so when it is not after the cutoff this inbound is the only one there.
 * - PreferredChannel: `min_count` of the lead's last 5 inbound came on one channel (else: the
 *   directory's `preferred_channel`, which the lead's state carries), and neither of our last 2
 *   outbound used it. Answered by an
 *   outbound on that channel that occurred after the first of those two.
 */
create or replace function public.log_activity(
  p_tenant          text,
  p_lead_id         text,
  p_channel         text,
  p_direction       text,
  p_status          text default 'sent',
  p_message_snippet text default null,
  p_meta            jsonb default null,
  p_occurred_at     timestamptz default null,
  p_external_id     text default null
) returns jsonb
language plpgsql
security definer  -- moves lead_state and alerts, which users cannot write themselves
set search_path = ''
-- Every statement here reads one lead by key: one plan each, made once per connection, never
-- replanned per call (the rules' statement would otherwise cost more to plan than to run).
set plan_cache_mode = force_generic_plan
as $$
declare
  v_at       timestamptz := coalesce(p_occurred_at, now());
  v_activity public.lead_activities;
  v_old      public.lead_state;
  v_new      public.lead_state;
  v_rules    record;
  v_types    text[] := '{}'::text[];
  v_open     text[];            -- the lead's active alert types
  v_created  text[] := '{}'::text[];
  v_resolved jsonb := '[]'::jsonb;
  v_cutoff    timestamptz;      -- HotLead24h counts the inbound after this (the window, our last outbound)
  v_hot       boolean;          -- may this activity raise HotLead24h?
  v_preferred boolean;          -- ... PreferredChannel?
  v_count     integer;          -- the burst: how many inbound, since when
  v_since     timestamptz;
  v_channel   text;             -- the lead's channel: most of their last 5 inbound, else the directory's
  v_ours      text[];           -- the channels of our last 2 outbound, since when
  v_streak    timestamptz;
begin
  if not public.is_trusted_caller() then  -- a user: in their tenant, and (agents) for their own leads
    perform public.assert_acts_in(p_tenant);
    if not public.can_see_lead(p_tenant, p_lead_id) then
      perform public.raise_error('LW404', 'lead not found', 'leadId');
    end if;
  end if;
  if v_at > now() + interval '5 minutes' then
    perform public.raise_error('LW422', 'occurredAt is more than 5 minutes in the future', 'occurredAt');
  end if;

  insert into public.lead_activities
    (tenant_id, lead_id, channel, direction, status, message_snippet, meta, occurred_at, external_id)
  values
    (p_tenant, p_lead_id, p_channel, p_direction, coalesce(p_status, 'sent'), left(p_message_snippet, 100),
     p_meta, v_at, p_external_id)
  on conflict (tenant_id, channel, external_id) where external_id is not null do nothing
  returning * into v_activity;

  if v_activity.id is null then  -- a replay: answer with what was stored the first time
    select * into v_activity from public.lead_activities a
    where a.tenant_id = p_tenant and a.channel = p_channel and a.external_id = p_external_id;
    return jsonb_build_object('activity', public.activity_json(v_activity),
                              'alerts', jsonb_build_object('created', '[]'::jsonb, 'resolved', '[]'::jsonb),
                              'duplicate', true);
  end if;

  if public.counts_as_contact(v_activity.status) then
    select * into v_rules from public.rules_at_ingest(p_tenant);

    -- One writer per lead at a time: the state row is the lock.
    select * into v_old from public.lead_state s
    where s.tenant_id = p_tenant and s.lead_id = p_lead_id for update;
    if not found then
      insert into public.lead_state (tenant_id, lead_id, entered_at) values (p_tenant, p_lead_id, v_at)
      on conflict do nothing;
      select * into v_old from public.lead_state s
      where s.tenant_id = p_tenant and s.lead_id = p_lead_id for update;
    end if;

    v_new := v_old;
    v_new.last_activity_at := greatest(v_old.last_activity_at, v_at);
    if p_direction = 'in' then
      v_new.last_inbound_at := greatest(v_old.last_inbound_at, v_at);
    else
      v_new.last_outbound_at := greatest(v_old.last_outbound_at, v_at);
    end if;

    -- Any later activity breaks the silence: NoContact7d, StaleLead30d and HighValueRisk start over.
    if v_new.last_activity_at is distinct from v_old.last_activity_at then
      v_types := v_types || array['NoContact7d', 'StaleLead30d', 'HighValueRisk'];
      v_new.no_contact_due_at := v_new.last_activity_at + v_rules.no_contact;
      v_new.stale_due_at := v_new.last_activity_at + v_rules.stale;
      v_new.high_value_due_at := case when v_new.high_value then v_new.last_activity_at + v_rules.high_value end;
    end if;

    -- Anything after our last outbound answers NoReply3d: a reply ends it, a new message restarts it.
    if v_at > coalesce(v_old.last_outbound_at, '-infinity') then
      v_types := v_types || array['NoReply3d'];
      v_new.no_reply_due_at := case
        when v_new.last_outbound_at > coalesce(v_new.last_inbound_at, '-infinity')
        then v_new.last_outbound_at + v_rules.no_reply
      end;
    end if;

    update public.lead_state s set
      last_activity_at  = v_new.last_activity_at,
      last_inbound_at   = v_new.last_inbound_at,
      last_outbound_at  = v_new.last_outbound_at,
      no_contact_due_at = v_new.no_contact_due_at,
      no_reply_due_at   = v_new.no_reply_due_at,
      stale_due_at      = v_new.stale_due_at,
      high_value_due_at = v_new.high_value_due_at
    where s.tenant_id = p_tenant and s.lead_id = p_lead_id;

    select coalesce(array_agg(a.type), '{}') into v_open
    from public.max_alerts a
    where a.tenant_id = p_tenant and a.lead_id = p_lead_id and a.resolved_at is null;

    -- Most activities find nothing to answer: look before writing (and firing the history trigger).
    -- An outbound answers HotLead24h, and PreferredChannel when it uses the lead's channel.
    if cardinality(v_open) > 0 and (cardinality(v_types) > 0 or p_direction = 'out') then
      with resolved as (
        update public.max_alerts a
        set resolved_at = now(), resolved_by = 'system', resolution = 'activity', resolved_by_activity = v_activity.id
        where a.tenant_id = p_tenant and a.lead_id = p_lead_id and a.resolved_at is null
          and (a.type = any (v_types)
               or (p_direction = 'out' and v_at > a.cycle_started_at
                   and (a.type = 'HotLead24h' or (a.type = 'PreferredChannel' and a.channel = p_channel))))
        returning a.type
      )
      select coalesce(jsonb_agg(r.type order by r.type), '[]') into v_resolved from resolved r;
      v_open := array(select unnest(v_open) except select jsonb_array_elements_text(v_resolved));
    end if;

    -- What the ingest-time rules need, read in one statement from the lead's newest activities (the
    -- index's order): the newest inbound (HotLead24h's burst, PreferredChannel's last 5) and our
    -- last 2 outbound. Only when a rule can fire: enabled, not already active, and (HotLead24h) an
    -- inbound within the window after our last outbound, (PreferredChannel) once we have written.
    v_cutoff := greatest(now() - v_rules.hot_window, coalesce(v_new.last_outbound_at, '-infinity'));
    v_hot := p_direction = 'in' and v_rules.hot_count is not null and not 'HotLead24h' = any (v_open)
             and v_at > v_cutoff and (v_rules.hot_count <= 1 or v_old.last_inbound_at > v_cutoff);
    v_preferred := v_rules.preferred_count is not null and not 'PreferredChannel' = any (v_open)
                   and v_new.last_outbound_at is not null;
    if v_hot or v_preferred then
      with inbound as (
        select a.channel, a.occurred_at, row_number() over (order by a.occurred_at desc, a.id desc) as k
        from public.lead_activities a
        where a.tenant_id = p_tenant and a.lead_id = p_lead_id
          and a.direction = 'in' and public.counts_as_contact(a.status)
        order by a.occurred_at desc, a.id desc
        limit greatest(5, v_rules.hot_count)
      ),
      outbound as (
        select a.channel, a.occurred_at
        from public.lead_activities a
        where a.tenant_id = p_tenant and a.lead_id = p_lead_id
          and a.direction = 'out' and public.counts_as_contact(a.status)
        order by a.occurred_at desc, a.id desc
        limit 2
      ),
      -- The channel at least `min_count` of the last 5 inbound came on (within the rule's window, if any).
      heard as (
        select i.channel
        from inbound i
        where i.k <= 5 and (v_rules.preferred_window is null or i.occurred_at > now() - v_rules.preferred_window)
        group by i.channel
        having count(*) >= v_rules.preferred_count
        order by count(*) desc, max(i.occurred_at) desc
        limit 1
      )
      select count(*) filter (where v_hot and i.k <= v_rules.hot_count and i.occurred_at > v_cutoff),
             min(i.occurred_at) filter (where v_hot and i.k <= v_rules.hot_count and i.occurred_at > v_cutoff),
             case when v_preferred then coalesce((select h.channel from heard h),
                                                 v_old.preferred_channel) end,
             case when v_preferred then (select array_agg(o.channel::text) from outbound o) end,
             case when v_preferred then (select min(o.occurred_at) from outbound o) end
      into v_count, v_since, v_channel, v_ours, v_streak
      from inbound i;

      if v_hot and v_count >= v_rules.hot_count then
        perform public.raise_ingest_alert(p_tenant, p_lead_id, 'HotLead24h', v_since, v_count);
        v_created := v_created || 'HotLead24h'::text;
      end if;
      if v_preferred and v_channel is not null and cardinality(v_ours) = 2 and not v_channel = any (v_ours) then
        perform public.raise_ingest_alert(p_tenant, p_lead_id, 'PreferredChannel', v_streak, p_channel => v_channel);
        v_created := v_created || 'PreferredChannel'::text;
      end if;
    end if;
  end if;

  return jsonb_build_object('activity', public.activity_json(v_activity),
                            'alerts', jsonb_build_object('created', to_jsonb(v_created), 'resolved', v_resolved),
                            'duplicate', false);
end
$$;
grant execute on function public.log_activity(text, text, text, text, text, text, jsonb, timestamptz, text) to authenticated, service_role;

/** A lead's timeline, newest first (by when it happened), one page at a time. */
create or replace function public.list_lead_activities(
  p_tenant  text,
  p_lead_id text,
  p_limit   integer default 50,
  p_cursor  jsonb default null
) returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_result jsonb;
begin
  perform public.check_page(p_limit, p_cursor, array['o', 'i']);
  if not exists (select from public.lead_state s where s.tenant_id = p_tenant and s.lead_id = p_lead_id)
     and not exists (select from public.leads l where l.tenant_id = p_tenant and l.lead_id = p_lead_id) then
    perform public.raise_error('LW404', 'lead not found', 'leadId');
  end if;

  with page as (
    select a, row_number() over (order by a.occurred_at desc, a.id desc) as n
    from public.lead_activities a
    where a.tenant_id = p_tenant and a.lead_id = p_lead_id
      and (p_cursor is null
           or (a.occurred_at, a.id) < ((p_cursor ->> 'o')::timestamptz, (p_cursor ->> 'i')::uuid))
    order by a.occurred_at desc, a.id desc
    limit p_limit + 1
  )
  select jsonb_build_object(
    'activities', coalesce((select jsonb_agg(public.activity_json(p.a) order by p.n) from page p where p.n <= p_limit), '[]'),
    'next_cursor', (select jsonb_build_object('o', (p.a).occurred_at, 'i', (p.a).id)
                    from page p where p.n = p_limit and exists (select from page q where q.n > p_limit)))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.list_lead_activities(text, text, integer, jsonb) to authenticated, service_role;

/**
 * Log activities of distinct leads (no two with the same lead, no two with the same channel and
 * external id) and apply the rules they trigger, exactly as `log_activity` describes; answer one
 * result per activity, keyed by its `ord`: the rules of `log_activity`, set-based. The core of
 * `log_activities`, which checks the caller and the input first; nobody calls it directly.
 *
 * 1. Store the activities (a replay of a stored external id is not stored again), lock the state
 *    rows of the leads they concern and read them (one writer per lead at a time); create those
 *    missing, then lock and read them too.
 * 2. Move each lead's state forward and judge, from the state read, the lead's active alerts and
 *    its newest activities (read only when an ingest-time rule can fire), what the activity
 *    answers and raises. One statement: a fresh snapshot taken once the leads are locked.
 * 3. Resolve, then raise, only when there is something to resolve or raise (an alert write fires
 *    the history triggers even when it writes nothing).
 */
create or replace function public.ingest_activities(p_tenant text, p_items public.activity_in[])
returns jsonb
language plpgsql
set search_path = ''
-- Each statement reads a few leads by key: one plan, made once per connection, never replanned per call.
set plan_cache_mode = force_generic_plan
as $$
declare
  v_rows     public.lead_activities[];
  v_contacts bigint;                  -- how many of them count as contact
  v_state    public.lead_state[];     -- the state of their leads before them, locked
  v_verdicts public.ingest_verdict[];
  v_answered uuid[];                  -- the active alerts the activities answer, to resolve
  v_resolver jsonb;                   -- the activity answering them, by lead
  v_resolved jsonb;
  v_created  jsonb;
  v_results  jsonb;
begin
  with stored as (
    insert into public.lead_activities as a
      (tenant_id, lead_id, channel, direction, status, message_snippet, meta, occurred_at, external_id)
    select p_tenant, i.lead_id, i.channel, i.direction, coalesce(i.status, 'sent'), left(i.message_snippet, 100),
           i.meta, coalesce(i.occurred_at, now()), i.external_id
    from unnest(p_items) i
    order by i.ord
    on conflict (tenant_id, channel, external_id) where external_id is not null do nothing
    returning a.tenant_id, a.lead_id, a.status, a.occurred_at, a as activity
  ),
  -- The leads' state, locked in key order: its latest version (the lock waits for another writer).
  locked as (
    select s from public.lead_state s
    where s.tenant_id = p_tenant
      and s.lead_id in (select a.lead_id from stored a where public.counts_as_contact(a.status))
    order by s.lead_id
    for update
  ),
  entered as (  -- a lead first heard of now: its silence starts with this activity
    insert into public.lead_state (tenant_id, lead_id, entered_at)
    select a.tenant_id, a.lead_id, a.occurred_at from stored a
    where public.counts_as_contact(a.status) and a.lead_id not in (select (l.s).lead_id from locked l)
    on conflict do nothing
  )
  select array_agg(s.activity), count(*) filter (where public.counts_as_contact(s.status)),
         (select array_agg(l.s) from locked l)
  into v_rows, v_contacts, v_state
  from stored s;

  if coalesce(cardinality(v_state), 0) < v_contacts then
    -- Leads first heard of now (their rows, created above, were invisible to the lock): lock and
    -- read them all again.
    select array_agg(l.s) into v_state
    from (select s from public.lead_state s
          where s.tenant_id = p_tenant
            and s.lead_id in (select a.lead_id from unnest(v_rows) a where public.counts_as_contact(a.status))
          order by s.lead_id
          for update) l;
  end if;

  with rules as materialized (
    select r.no_contact as t_no_contact, r.no_reply as t_no_reply, r.stale as t_stale,
           r.high_value as t_high_value, r.hot_window, r.hot_count, r.preferred_window, r.preferred_count
    from public.rules_at_ingest(p_tenant) r
  ),
  moved as (  -- the lead's state before (s) and after (last_*) the activity
    select s.*, a.id as activity_id, a.direction as dir, a.channel as chan, a.occurred_at as at,
           greatest(s.last_activity_at, a.occurred_at) as last_at,
           case when a.direction = 'in' then greatest(s.last_inbound_at, a.occurred_at)
                else s.last_inbound_at end as last_in,
           case when a.direction = 'out' then greatest(s.last_outbound_at, a.occurred_at)
                else s.last_outbound_at end as last_out,
           r.*
    from unnest(v_state) s
    join unnest(v_rows) a on a.lead_id = s.lead_id
    cross join rules r
  ),
  judged as (
    select m.*,
           -- Any later activity breaks the silence: NoContact7d, StaleLead30d and HighValueRisk start over.
           m.last_at is distinct from m.last_activity_at as silence_broken,
           -- Anything after our last outbound answers NoReply3d: a reply ends it, a new message restarts it.
           m.at > coalesce(m.last_outbound_at, '-infinity') as after_ours,
           -- HotLead24h counts the inbound after this: the window, our last outbound.
           greatest(now() - m.hot_window, coalesce(m.last_out, '-infinity')) as cutoff
    from moved m
  ),
  answered as (
    select j.*,
           case when j.silence_broken then array['NoContact7d', 'StaleLead30d', 'HighValueRisk'] else '{}' end
           || case when j.after_ours then array['NoReply3d'] else '{}' end as answers
    from judged j
  ),
  moved_state as (
    update public.lead_state s set
      last_activity_at  = j.last_at,
      last_inbound_at   = j.last_in,
      last_outbound_at  = j.last_out,
      no_contact_due_at = case when j.silence_broken then j.last_at + j.t_no_contact else s.no_contact_due_at end,
      stale_due_at      = case when j.silence_broken then j.last_at + j.t_stale else s.stale_due_at end,
      high_value_due_at = case when j.silence_broken then case when s.high_value then j.last_at + j.t_high_value end
                               else s.high_value_due_at end,
      no_reply_due_at   = case when j.after_ours
                               then case when j.last_out > coalesce(j.last_in, '-infinity') then j.last_out + j.t_no_reply end
                               else s.no_reply_due_at end
    from answered j
    where s.tenant_id = p_tenant and s.lead_id = j.lead_id
  ),
  -- Only when a rule can fire: enabled, not already active, and (HotLead24h) an inbound within the
  -- window after our last outbound, (PreferredChannel) once we have written. HotLead24h reads the
  -- burst only when an earlier inbound may be in the window: the lead's `last_inbound_at` is never
  -- older than its newest stored inbound, so when it is not after the cutoff this inbound is alone.
  ruled as (
    select j.*, o.answered_ids,
           j.dir = 'in' and j.hot_count is not null and not 'HotLead24h' = any (coalesce(o.still_open, '{}'))
             and j.at > j.cutoff and (j.hot_count <= 1 or j.last_inbound_at > j.cutoff) as hot,
           j.preferred_count is not null and not 'PreferredChannel' = any (coalesce(o.still_open, '{}'))
             and j.last_out is not null as preferred
    from answered j
    -- The lead's active alerts: those the activity answers (an outbound also answers HotLead24h, and
    -- PreferredChannel when it uses the lead's channel), and those still active after it.
    cross join lateral (
      select array_agg(x.type) filter (where not x.answered) as still_open,
             array_agg(a.id) filter (where x.answered) as answered_ids
      from public.max_alerts a
      cross join lateral (
        select a.type::text as type,
               a.type::text = any (j.answers)
               or (j.dir = 'out' and j.at > a.cycle_started_at
                   and (a.type = 'HotLead24h' or (a.type = 'PreferredChannel' and a.channel = j.chan))) as answered
      ) x
      where a.tenant_id = p_tenant and a.lead_id = j.lead_id and a.resolved_at is null
    ) o
  )
  select array_agg(row(r.lead_id, b.n, b.since, r.hot and coalesce(b.n, 0) >= r.hot_count,
                       p.channel, o.since,
                       r.preferred and p.channel is not null and cardinality(o.channels) = 2
                         and not p.channel = any (o.channels))::public.ingest_verdict),
         (select array_agg(x.id) from ruled x2 cross join unnest(x2.answered_ids) x(id)),
         jsonb_object_agg(r.lead_id, r.activity_id) filter (where r.answered_ids is not null)
  into v_verdicts, v_answered, v_resolver
  from ruled r
  -- Our last 2 outbound, read in the index's order: PreferredChannel needs both.
  left join lateral (
    select array_agg(x.channel::text) as channels, min(x.occurred_at) as since
    from (select a.channel, a.occurred_at
          from public.lead_activities a
          where a.tenant_id = p_tenant and a.lead_id = r.lead_id
            and a.direction = 'out' and public.counts_as_contact(a.status)
          order by a.occurred_at desc, a.id desc
          limit 2) x
  ) o on r.preferred
  -- The lead's newest inbound (HotLead24h's burst, PreferredChannel's last 5); this activity is
  -- among them (it is stored).
  left join lateral (
    select array_agg(x.channel::text order by x.occurred_at desc, x.id desc) as channels,
           array_agg(x.occurred_at order by x.occurred_at desc, x.id desc) as times
    from (select a.channel, a.occurred_at, a.id
          from public.lead_activities a
          where a.tenant_id = p_tenant and a.lead_id = r.lead_id
            and a.direction = 'in' and public.counts_as_contact(a.status)
          order by a.occurred_at desc, a.id desc
          limit greatest(5, r.hot_count)) x
  ) i on r.hot or (r.preferred and cardinality(o.channels) = 2)
  -- The burst: the last `min_count` inbound that occurred after the cutoff.
  left join lateral (
    select count(*)::integer as n, min(u.at) as since
    from unnest(i.channels, i.times) with ordinality u(channel, at, k)
    where u.k <= r.hot_count and u.at > r.cutoff
  ) b on r.hot
  -- The lead's channel: the one at least `min_count` of the last 5 inbound came on (within the
  -- rule's window, if any), else the directory's (which the lead's state carries).
  left join lateral (
    select coalesce(
             (select u.channel
              from unnest(i.channels, i.times) with ordinality u(channel, at, k)
              where u.k <= 5 and (r.preferred_window is null or u.at > now() - r.preferred_window)
              group by u.channel
              having count(*) >= r.preferred_count
              order by count(*) desc, max(u.at) desc
              limit 1),
             r.preferred_channel::text) as channel
  ) p on r.preferred and cardinality(o.channels) = 2;

  if v_answered is not null then
    -- The alerts judging found answered, by their keys (no join whose method the statistics would
    -- choose); a concurrent resolution is seen and left alone.
    with resolved as (
      update public.max_alerts a
      set resolved_at = now(), resolved_by = 'system', resolution = 'activity',
          resolved_by_activity = (v_resolver ->> a.lead_id)::uuid
      where a.tenant_id = p_tenant and a.id = any (v_answered) and a.resolved_at is null
      returning a.lead_id, a.type
    )
    select jsonb_object_agg(r.lead_id, r.types) into v_resolved
    from (select r.lead_id, jsonb_agg(r.type order by r.type) as types from resolved r group by r.lead_id) r;
  end if;

  if exists (select from unnest(v_verdicts) v where v.raise_hot or v.raise_pref) then
    -- The rule's message and action in the tenant's language: `{count}`, `{hours}` and `{channel}` filled in.
    with raised as (
      insert into public.max_alerts
        (tenant_id, lead_id, type, severity, message, suggested_action, cycle_started_at, channel)
      select p_tenant, v.lead_id, r.type, r.severity,
             replace(replace(replace(coalesce(r.messages ->> r.locale, r.messages ->> 'fr'),
                                     '{count}', coalesce(e.n::text, '')),
                             '{hours}', coalesce((extract(epoch from r.threshold) / 3600)::integer::text, '')),
                     '{channel}', coalesce(e.channel, '')),
             jsonb_build_object(
               'label', coalesce(r.action -> 'label' ->> r.locale, r.action -> 'label' ->> 'fr'),
               'action', r.action ->> 'action',
               'params', coalesce(r.action -> 'params', '{}'::jsonb) || jsonb_build_object('leadId', v.lead_id)
                         || case when e.channel is null then '{}'::jsonb
                                 else jsonb_build_object('channel', e.channel) end),
             e.since, e.channel::public.channel
      from unnest(v_verdicts) v
      cross join lateral (values ('HotLead24h', v.raise_hot, v.hot_since, v.hot_count, null::text),
                                 ('PreferredChannel', v.raise_pref, v.pref_since, null, v.pref_channel))
        e(type, raise, since, n, channel)
      join public.rules_for(p_tenant) r on r.type = e.type
      where e.raise
      order by v.lead_id, e.type
      returning lead_id, type
    )
    select jsonb_object_agg(c.lead_id, c.types) into v_created
    from (select c.lead_id, jsonb_agg(c.type order by c.type) as types from raised c group by c.lead_id) c;
  end if;

  -- One answer per activity, by its place; a replay answers with what was stored the first time (read
  -- now, in a fresh snapshot: it may have been stored by a transaction that committed meanwhile).
  select jsonb_object_agg(i.ord,
           case when a.id is not null then
             jsonb_build_object('activity', public.activity_json(a),
                                'alerts', jsonb_build_object('created', coalesce(v_created -> a.lead_id, '[]'),
                                                             'resolved', coalesce(v_resolved -> a.lead_id, '[]')),
                                'duplicate', false)
           else
             jsonb_build_object('activity', (select public.activity_json(d) from public.lead_activities d
                                             where d.tenant_id = p_tenant and d.channel = i.channel
                                               and d.external_id = i.external_id),
                                'alerts', jsonb_build_object('created', '[]'::jsonb, 'resolved', '[]'::jsonb),
                                'duplicate', true)
           end)
  into v_results
  from unnest(p_items) i
  left join unnest(v_rows) a on a.lead_id = i.lead_id;
  return v_results;
end
$$;
grant execute on function public.ingest_activities(text, public.activity_in[]) to service_role;

/**
 * Log a list of activities (at most 1,000; each as `POST /api/activities/log` takes one, its
 * fields in snake case) in one transaction, and answer `{results: [...]}`: for each activity, in
 * order, what `log_activity` would answer had they been logged one after another. Nothing is
 * stored unless every activity is valid and allowed: the first that is not stops the call, its
 * place named (`[3].leadId`). An activity whose external id is stored, or appears earlier in the
 * list, is a replay (`duplicate: true`): retrying a batch stores each activity once.
 *
 * Activities of distinct leads are logged together, set-based: the list goes through
 * `ingest_activities` in rounds, the k-th activity of every lead in round k.
 */
create or replace function public.log_activities(p_tenant text, p_activities jsonb)
returns jsonb
language plpgsql
security definer  -- moves lead_state and alerts, which users cannot write themselves
set search_path = ''
as $$
declare
  v_items   public.activity_in[];
  v_bad     record;
  v_round   public.activity_in[];
  v_answers jsonb := '{}'::jsonb;   -- the rounds' answers, by their activities' places in the list
  v_results jsonb;
begin
  if not public.is_trusted_caller() then
    perform public.assert_acts_in(p_tenant);
  end if;
  if jsonb_typeof(p_activities) is distinct from 'array' then
    perform public.raise_error('LW422', 'activities must be a list', 'activities');
  end if;
  if jsonb_array_length(p_activities) > 1000 then
    perform public.raise_error('LW422', 'at most 1,000 activities per call', 'activities');
  end if;

  -- Each activity's own checks, the first failure named by its place in the list.
  select i.ord - 1 as place, case
           when jsonb_typeof(i.item) is distinct from 'object' then 'must be an object'
           when coalesce(i.item ->> 'lead_id', '') = '' then 'leadId'
           when (i.item ->> 'channel') is null
                or (i.item ->> 'channel') not in ('whatsapp', 'email', 'call', 'other') then 'channel'
           when (i.item ->> 'direction') is null or (i.item ->> 'direction') not in ('in', 'out') then 'direction'
         end as field
  into v_bad
  from jsonb_array_elements(p_activities) with ordinality i(item, ord)
  where jsonb_typeof(i.item) is distinct from 'object'
     or coalesce(i.item ->> 'lead_id', '') = ''
     or (i.item ->> 'channel') is null or (i.item ->> 'channel') not in ('whatsapp', 'email', 'call', 'other')
     or (i.item ->> 'direction') is null or (i.item ->> 'direction') not in ('in', 'out')
  order by i.ord
  limit 1;
  if found then
    perform public.raise_error('LW422', format('activity %s: %s is missing or invalid', v_bad.place, v_bad.field),
                               format('[%s].%s', v_bad.place, v_bad.field));
  end if;

  select array_agg(row(i.ord::integer, x.lead_id, x.channel, x.direction, x.status, x.message_snippet, x.meta,
                       x.occurred_at, x.external_id)::public.activity_in order by i.ord)
  into v_items
  from jsonb_array_elements(p_activities) with ordinality i(item, ord)
  cross join lateral jsonb_populate_record(null::public.activity_in, i.item) x;

  select i.ord - 1 as place into v_bad from unnest(v_items) i
  where i.occurred_at > now() + interval '5 minutes' order by i.ord limit 1;
  if found then
    perform public.raise_error('LW422', 'occurredAt is more than 5 minutes in the future',
                               format('[%s].occurredAt', v_bad.place));
  end if;
  if not public.is_trusted_caller() then  -- agents log only for the leads they own
    select i.ord - 1 as place into v_bad from unnest(v_items) i
    where not public.can_see_lead(p_tenant, i.lead_id) order by i.ord limit 1;
    if found then
      perform public.raise_error('LW404', 'lead not found', format('[%s].leadId', v_bad.place));
    end if;
  end if;

  -- The k-th activity of every lead, in round k; an activity repeating an earlier one's channel and
  -- external id waits for the end, and answers as the replay it is.
  for v_round in
    select array_agg(r.item order by (r.item).ord)
    from (select i as item,
                 row_number() over (partition by i.lead_id order by i.ord) as k,
                 i.external_id is not null
                 and i.ord > min(i.ord) over (partition by i.channel, i.external_id) as repeated
          from unnest(v_items) i) r
    where not r.repeated
    group by r.k
    order by r.k
  loop
    v_answers := v_answers || public.ingest_activities(p_tenant, v_round);
  end loop;

  -- In the list's order; the repeats answer with the activity stored under their external id.
  select coalesce(jsonb_agg(
           coalesce(v_answers -> i.ord::text,
                    jsonb_build_object('activity', (select public.activity_json(d) from public.lead_activities d
                                                    where d.tenant_id = p_tenant and d.channel = i.channel
                                                      and d.external_id = i.external_id),
                                       'alerts', jsonb_build_object('created', '[]'::jsonb, 'resolved', '[]'::jsonb),
                                       'duplicate', true))
           order by i.ord), '[]')
  into v_results
  from unnest(v_items) i;
  return jsonb_build_object('results', v_results);
end
$$;
grant execute on function public.log_activities(text, jsonb) to authenticated, service_role;

-- =================================================================================================
-- supabase/schemas/30_alerts.sql
-- =================================================================================================

-- Alerts: the living alerts, their append-only history and counts, the rules' defaults, and the
-- desk (list, resolve, snooze, act in bulk, overdue).

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Tables ------------------------------------------------------------------------------------------

create table public.alert_rules (
  tenant_id          text not null default '*',   -- '*' holds the defaults; a tenant's own row replaces them
  type               public.alert_type not null,
  enabled            boolean not null default true,
  threshold          interval,                    -- raised once the condition has held this long; PreferredChannel
                                                  -- needs no duration (when set, it bounds how old an inbound it counts)
  severity           public.severity not null,
  escalate_after     interval,                    -- escalated in place once it has held this long (null: never)
  escalated_severity public.severity,
  min_value          numeric(14, 2),              -- HighValueRisk: lead value from which the rule applies
  currency           text,                        -- ... in this currency
  supersedes         public.alert_type,           -- raising this resolves that (StaleLead30d over NoContact7d)
  locale             text not null default 'fr',  -- 'fr' or 'en': language of messages and labels
  messages           jsonb not null,              -- {"fr": "... {days} ...", "en": "..."}
  action             jsonb not null,              -- {"label": {"fr", "en"}, "action": "send_whatsapp", "params": {...},
                                                  --  "text": {"fr", "en"}: the WhatsApp message it sends, {name} filled in}
  min_count          smallint,                    -- HotLead24h: inbound messages that make a burst;
                                                  -- PreferredChannel: how many of the last 5 inbound on one channel
  overdue_after      interval not null default '24 hours',  -- a high alert unresolved this long is overdue
  constraint alert_rules_pkey primary key (tenant_id, type),
  constraint alert_rules_locale_known check (locale in ('fr', 'en')),
  constraint alert_rules_ladder_complete check ((escalate_after is null) = (escalated_severity is null)),
  constraint alert_rules_ladder_rises check (escalate_after is null or escalate_after > threshold),
  constraint alert_rules_min_count_positive check (min_count >= 1),
  constraint alert_rules_overdue_after_positive check (overdue_after > interval '0')
);

create table public.max_alerts (
  id               uuid not null default public.uuid_v7(),  -- time-ordered: inserts append to the key index
  tenant_id        text not null,
  lead_id          text not null,
  type             public.alert_type not null,
  severity         public.severity not null,
  message          text not null,
  suggested_action jsonb,
  created_at       timestamptz not null default now(),
  resolved_at      timestamptz default null,
  resolved_by      text default null,               -- 'system' for the rules, else the user's id
  severity_rank    smallint not null generated always as
                     (case severity when 'high' then 1 when 'med' then 2 else 3 end) stored,
  escalated_at     timestamptz,                     -- last time the severity rose in place
  cycle_started_at timestamptz,                     -- evidence: when the silence (or the unanswered message) began
  resolution       text,                            -- why it ended: 'activity', 'manual', 'superseded', 'rule'
  resolved_by_activity uuid,                        -- the activity that answered it (reopened if that send fails)
  channel          public.channel,                  -- PreferredChannel: the lead's channel (an outbound on it answers the alert)
  snoozed_until    timestamptz,                     -- hidden from the active list until the sweep wakes it (null: not snoozed)
  overdue_at       timestamptz,                     -- when the sweep found it high and unresolved past the tenant's delay
  constraint max_alerts_pkey primary key (tenant_id, id),  -- tenant first: every key leads with it
  constraint max_alerts_resolution_known check (resolution in ('activity', 'manual', 'superseded', 'rule'))
);

create table public.alert_events (
  id        bigint generated always as identity,
  tenant_id text not null,
  alert_id  uuid not null,
  lead_id   text not null,
  type      public.alert_type not null,
  event     text not null,
  severity  public.severity not null,   -- the severity after the event
  actor     text not null,              -- 'system' or the user's id
  at        timestamptz not null default now(),
  constraint alert_events_pkey primary key (tenant_id, id),
  constraint alert_events_event_known
    check (event in ('created', 'escalated', 'resolved', 'reopened', 'snoozed', 'unsnoozed', 'overdue'))
);

-- How many alerts are active per tenant, severity and type: the dashboard's stats without counting
-- rows. Kept by the triggers below, in the transaction that changes the alerts.
create table public.alert_counts (
  tenant_id text not null,
  severity  public.severity not null,
  type      public.alert_type not null,
  active    bigint not null default 0,
  constraint alert_counts_pkey primary key (tenant_id, severity, type)
);

-- The reference's view, extended with the lead's name and email; RLS of the caller applies. Its
-- columns are the alert's as the reference has them (the later ones are read through the functions).
create view public.active_alerts with (security_invoker = true) as
select a.id, a.tenant_id, a.lead_id, a.type, a.severity, a.message, a.suggested_action, a.created_at,
       a.resolved_at, a.resolved_by, a.severity_rank, a.escalated_at, a.cycle_started_at, a.resolution,
       a.resolved_by_activity, l.name as lead_name, l.email as lead_email
from public.max_alerts a
left join public.leads l on l.tenant_id = a.tenant_id and l.lead_id = a.lead_id
where a.resolved_at is null
order by a.severity_rank, a.created_at desc, a.id desc;

-- One active alert per tenant, lead and type (the reference's index).
create unique index idx_max_alerts_unique_active
  on public.max_alerts (tenant_id, lead_id, type) where resolved_at is null;

create index idx_max_alerts_tenant_lead on public.max_alerts (tenant_id, lead_id);

-- The dashboard's order (high, med, low, then newest) read straight from an index.
create index idx_max_alerts_active_order
  on public.max_alerts (tenant_id, severity_rank, created_at desc, id desc) where resolved_at is null;

-- A lead's history (merging a provisional lead moves it; row-level security filters by lead).
create index alert_events_tenant_lead on public.alert_events (tenant_id, lead_id);

-- Alerts answered by an activity, found again if that activity turns out not to count (a failed send).
create index idx_max_alerts_resolved_by_activity
  on public.max_alerts (resolved_by_activity) where resolved_by_activity is not null;

-- The snoozed alerts of a tenant (its `snoozed` list and count) and those the sweep must wake.
create index idx_max_alerts_snoozed
  on public.max_alerts (tenant_id, snoozed_until) where resolved_at is null and snoozed_until is not null;

-- The high alerts not yet overdue, by the time they became high.
create index idx_max_alerts_overdue_watch
  on public.max_alerts ((coalesce(escalated_at, created_at)))
  where resolved_at is null and severity_rank = 1 and overdue_at is null;

-- A tenant's history in time order: the events of a range of days read from the index alone.
create index idx_alert_events_tenant_at on public.alert_events (tenant_id, at) include (event, lead_id);

-- A tenant's alerts resolved in a range of days, with what their time to resolve needs.
create index idx_max_alerts_tenant_resolved
  on public.max_alerts (tenant_id, resolved_at) include (created_at, type, lead_id)
  where resolved_at is not null;

-- A tenant's alerts in creation order (all of them, resolved included), page after page.
create index idx_max_alerts_tenant_created on public.max_alerts (tenant_id, created_at, id);

-- Grants and row-level security -------------------------------------------------------------------

-- Users read through row-level security; the service writes what the API writes. The history is
-- appended, never rewritten (and its trigger below refuses UPDATE, DELETE and TRUNCATE to everyone).
grant select on table public.alert_rules to authenticated;
grant select, insert, update, delete on table public.alert_rules to service_role;
grant select on table public.max_alerts to authenticated;
grant select, insert, update, delete on table public.max_alerts to service_role;
grant select on table public.alert_events to authenticated;
grant select, insert on table public.alert_events to service_role;
grant select on table public.alert_counts to authenticated, service_role;
grant select on table public.active_alerts to authenticated, service_role;
-- The history's ids: nobody but the owner uses the sequence (inserts go through the identity).
revoke all on sequence public.alert_events_id_seq from public, anon, authenticated, service_role;

alter table public.alert_rules enable row level security;
alter table public.max_alerts enable row level security;
alter table public.alert_events enable row level security;
alter table public.alert_counts enable row level security;

-- Triggers ----------------------------------------------------------------------------------------

/**
 * Record every escalation, resolution and reopening, and move the counts, set-based, whatever path made it.
 * No nested loop: the trigger pairs each changed alert's old and new rows, which the planner always
 * estimates at one row each (a transition table has no statistics); a nested loop over them was
 * quadratic (4 s for 6,582 alerts marked overdue by one sweep, 200,000 leads).
 */
create or replace function public.record_changed_alerts() returns trigger
language plpgsql
security definer
set search_path = ''
set enable_nestloop = off
as $$
begin
  insert into public.alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor)
  select n.tenant_id, n.id, n.lead_id, n.type, e.event, n.severity,
         case e.event when 'resolved' then n.resolved_by else 'system' end
  from new_alerts n
  join old_alerts o on o.id = n.id
  cross join lateral (select case
    when o.resolved_at is null and n.resolved_at is not null then 'resolved'
    when o.resolved_at is not null and n.resolved_at is null then 'reopened'
    when n.severity_rank < o.severity_rank then 'escalated'
  end as event) e
  where e.event is not null;

  insert into public.alert_counts as c (tenant_id, severity, type, active)
  select d.tenant_id, d.severity, d.type, sum(d.delta)
  from (select o.tenant_id, o.severity, o.type, -1 as delta from old_alerts o where o.resolved_at is null
        union all
        select n.tenant_id, n.severity, n.type, 1 from new_alerts n where n.resolved_at is null) d
  group by d.tenant_id, d.severity, d.type
  having sum(d.delta) <> 0
  order by d.tenant_id, d.severity, d.type
  on conflict (tenant_id, severity, type) do update set active = c.active + excluded.active;
  return null;
end
$$;

create trigger max_alerts_record_changed after update on public.max_alerts
  referencing old table as old_alerts new table as new_alerts
  for each statement execute function public.record_changed_alerts();

/**
 * Record every alert created, and count the active ones, set-based, whatever path created them.
 * Security definer: it writes the history and the counts, which no caller writes directly.
 */
create or replace function public.record_created_alerts() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor)
  select n.tenant_id, n.id, n.lead_id, n.type, 'created', n.severity, 'system'
  from new_alerts n;

  insert into public.alert_counts as c (tenant_id, severity, type, active)
  select n.tenant_id, n.severity, n.type, count(*)
  from new_alerts n
  where n.resolved_at is null
  group by n.tenant_id, n.severity, n.type
  order by n.tenant_id, n.severity, n.type  -- concurrent writers lock the counters in the same order
  on conflict (tenant_id, severity, type) do update set active = c.active + excluded.active;
  return null;
end
$$;

create trigger max_alerts_record_created after insert on public.max_alerts
  referencing new table as new_alerts
  for each statement execute function public.record_created_alerts();

/** Alerts are not deleted in normal operation; if they are, the counts follow. */
create or replace function public.record_deleted_alerts() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.alert_counts as c (tenant_id, severity, type, active)
  select o.tenant_id, o.severity, o.type, -count(*)
  from old_alerts o
  where o.resolved_at is null
  group by o.tenant_id, o.severity, o.type
  order by o.tenant_id, o.severity, o.type
  on conflict (tenant_id, severity, type) do update set active = c.active + excluded.active;
  return null;
end
$$;

create trigger max_alerts_record_deleted after delete on public.max_alerts
  referencing old table as old_alerts
  for each statement execute function public.record_deleted_alerts();

/**
 * alert_events is append-only: refuse UPDATE, DELETE and TRUNCATE, whoever asks (the owner too),
 * unless an owner-run maintenance function (merge_lead) has set the transaction-local
 * `leadwatch.history_maintenance` to 'on'. Privileges already keep every API role out; this
 * catches the owner's own mistakes and any grant added by hand later.
 */
create or replace function public.refuse_history_change() returns trigger
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

-- Policies ----------------------------------------------------------------------------------------

create policy "Rules are visible to their tenant's users, and the defaults to all of them" on public.alert_rules
  for select to authenticated
  using (tenant_id = '*' or (select public.sees_all_tenants()) or tenant_id = (select public.current_tenant()));

create policy "Alert counts are visible to the staff of their tenant" on public.alert_counts
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant()) and (select public.sees_whole_tenant())));

create policy "Alerts are visible to whoever may see the lead" on public.max_alerts
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant())
             and ((select public.sees_whole_tenant()) or lead_id in (select public.owned_leads()))));

create policy "Alert history is visible to whoever may see the lead" on public.alert_events
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant())
             and ((select public.sees_whole_tenant()) or lead_id in (select public.owned_leads()))));

-- Functions ---------------------------------------------------------------------------------------

/** An alert as the API lists it (the reference's shape, with the lead's name and email, and its desk state). */
create or replace function public.alert_json(p_alert public.max_alerts, p_lead_name text, p_lead_email text)
returns jsonb
language sql immutable
as $$
  select jsonb_build_object(
    'id', p_alert.id, 'tenant_id', p_alert.tenant_id, 'lead_id', p_alert.lead_id,
    'type', p_alert.type, 'severity', p_alert.severity, 'message', p_alert.message,
    'suggested_action', p_alert.suggested_action, 'created_at', p_alert.created_at,
    'escalated_at', p_alert.escalated_at, 'resolved_at', p_alert.resolved_at,
    'resolved_by', p_alert.resolved_by, 'resolution', p_alert.resolution,
    'snoozed_until', p_alert.snoozed_until, 'overdue', p_alert.overdue_at is not null, 'overdue_at', p_alert.overdue_at,
    'lead_name', p_lead_name, 'lead_email', p_lead_email)
$$;
grant execute on function public.alert_json(public.max_alerts, text, text) to authenticated, service_role;

/**
 * One page of a tenant's active (or, with `p_state` 'snoozed', snoozed) alerts in the dashboard's
 * order (high, med, low, then newest), with the stats of all its active alerts and how many are
 * snoozed, in one call. `p_cursor` is the `next_cursor` of the previous page. Runs as the caller:
 * a user sees (and counts) only what row-level security shows them.
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
    select x.alert, l.name, l.email,
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
    'alerts', coalesce((select jsonb_agg(public.alert_json(p.alert, p.name, p.email) order by p.n)
                        from page p where p.n <= p_limit), '[]'),
    'next_cursor', (select jsonb_build_object('r', (p.alert).severity_rank, 'c', (p.alert).created_at, 'i', (p.alert).id)
                    from page p
                    where p.n = p_limit and exists (select from page q where q.n > p_limit)))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.list_active_alerts(text, integer, jsonb, text, text, text, text) to authenticated, service_role;

/**
 * Resolve an alert by hand. Idempotent: resolving a resolved alert answers with the first
 * resolution. The same silence does not raise that alert again; the next activity starts anew.
 * An alert the caller may not see is not found (its existence is not revealed). A user is
 * recorded by their id (`sub`), whatever `p_actor` says.
 */
create or replace function public.resolve_alert(p_tenant text, p_alert_id uuid, p_actor text DEFAULT 'user_manual'::text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  v_alert public.max_alerts;
  v_actor text := case when public.is_trusted_caller() then p_actor else (select auth.jwt()) ->> 'sub' end;
begin
  perform public.assert_acts_in(p_tenant);
  select * into v_alert from public.max_alerts a where a.id = p_alert_id and a.tenant_id = p_tenant;
  if not found or not public.can_see_lead(v_alert.tenant_id, v_alert.lead_id) then
    perform public.raise_error('LW404', 'alert not found', 'id');
  end if;

  if v_alert.resolved_at is null then
    -- Lock the lead's state before the alert, in the sweep's order, so that the two never deadlock.
    perform from public.lead_state s where s.tenant_id = p_tenant and s.lead_id = v_alert.lead_id for update;
    update public.max_alerts a
    set resolved_at = now(), resolved_by = v_actor, resolution = 'manual'
    where a.tenant_id = p_tenant and a.id = p_alert_id and a.resolved_at is null
    returning * into v_alert;

    if found then
      update public.lead_state s set
        no_contact_due_at = case when v_alert.type = 'NoContact7d' then null else s.no_contact_due_at end,
        no_reply_due_at   = case when v_alert.type = 'NoReply3d' then null else s.no_reply_due_at end,
        stale_due_at      = case when v_alert.type = 'StaleLead30d' then null else s.stale_due_at end,
        high_value_due_at = case when v_alert.type = 'HighValueRisk' then null else s.high_value_due_at end
      where s.tenant_id = p_tenant and s.lead_id = v_alert.lead_id;
    else
      select * into v_alert from public.max_alerts a where a.tenant_id = p_tenant and a.id = p_alert_id;
    end if;
  end if;

  return jsonb_build_object('alert', jsonb_build_object(
    'id', v_alert.id, 'type', v_alert.type, 'lead_id', v_alert.lead_id,
    'resolved_at', v_alert.resolved_at, 'resolved_by', v_alert.resolved_by));
end
$function$
;
grant execute on function public.resolve_alert(text, uuid, text) to authenticated, service_role;

/** The short answer about one alert that the desk's actions return. */
create or replace function public.alert_brief(p_alert public.max_alerts) returns jsonb
language sql immutable
as $$
  select jsonb_build_object('id', p_alert.id, 'type', p_alert.type, 'lead_id', p_alert.lead_id,
                            'snoozed_until', p_alert.snoozed_until, 'severity', p_alert.severity)
$$;
grant execute on function public.alert_brief(public.max_alerts) to authenticated, service_role;

/**
 * Resolve or snooze (until `p_until`, at most 30 days ahead) alerts by id, in one transaction,
 * answering for each id in order: `done`, `already_resolved`, or `not_found` (no such alert in
 * this tenant, or one the caller may not see: its existence is not revealed). The same permissions
 * as resolving one alert. A user is recorded by their id (`sub`), whatever `p_actor` says.
 */
create or replace function public.act_on_alerts(p_tenant text, p_action text, p_ids jsonb, p_until timestamp with time zone DEFAULT NULL::timestamp with time zone, p_actor text DEFAULT 'user_manual'::text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  v_actor  text := case when public.is_trusted_caller() then p_actor else (select auth.jwt()) ->> 'sub' end;
  v_ids    uuid[];
  v_result jsonb;
begin
  perform public.assert_acts_in(p_tenant);
  if p_action is null or p_action not in ('resolve', 'snooze') then
    perform public.raise_error('LW422', 'action must be resolve or snooze', 'action');
  end if;
  if jsonb_typeof(p_ids) is distinct from 'array' or jsonb_array_length(p_ids) not between 1 and 500 then
    perform public.raise_error('LW422', 'ids must list 1 to 500 alert ids', 'ids');
  end if;
  if p_action = 'snooze' and (p_until is null or p_until <= now() or p_until > now() + interval '30 days 5 minutes') then
    perform public.raise_error('LW422', 'until must be in the future, at most 30 days ahead', 'until');
  end if;
  v_ids := array(select jsonb_array_elements_text(p_ids)::uuid);

  if p_action = 'resolve' then
    -- Lock the leads' states before their alerts, as resolve_alert does.
    perform from public.lead_state s
    where (s.tenant_id, s.lead_id) in (select a.tenant_id, a.lead_id from public.max_alerts a
                                       where a.id = any (v_ids) and a.tenant_id = p_tenant and a.resolved_at is null)
    order by s.lead_id
    for update;
  end if;

  with asked as (
    select i.id, i.n, a.id as alert_id, a.tenant_id, a.lead_id
    from jsonb_array_elements_text(p_ids) with ordinality as i (id, n)
    left join public.max_alerts a
      on a.id = i.id::uuid and a.tenant_id = p_tenant and public.can_see_lead(a.tenant_id, a.lead_id)
  ),
  resolved as (
    update public.max_alerts a
    set resolved_at = now(), resolved_by = v_actor, resolution = 'manual'
    from asked q
    where p_action = 'resolve' and a.tenant_id = q.tenant_id and a.id = q.alert_id and a.resolved_at is null
    returning a.id, a.tenant_id, a.lead_id, a.type
  ),
  -- A manual resolve: the same silence does not raise that alert again; the next activity starts anew.
  cleared as (
    update public.lead_state s set
      no_contact_due_at = case when r.no_contact then null else s.no_contact_due_at end,
      no_reply_due_at   = case when r.no_reply then null else s.no_reply_due_at end,
      stale_due_at      = case when r.stale then null else s.stale_due_at end,
      high_value_due_at = case when r.high_value then null else s.high_value_due_at end
    from (select d.tenant_id, d.lead_id,
                 bool_or(d.type = 'NoContact7d') as no_contact, bool_or(d.type = 'NoReply3d') as no_reply,
                 bool_or(d.type = 'StaleLead30d') as stale, bool_or(d.type = 'HighValueRisk') as high_value
          from resolved d group by d.tenant_id, d.lead_id) r
    where s.tenant_id = r.tenant_id and s.lead_id = r.lead_id
    returning 1
  ),
  snoozed as (
    update public.max_alerts a
    set snoozed_until = p_until
    from asked q
    where p_action = 'snooze' and a.tenant_id = q.tenant_id and a.id = q.alert_id and a.resolved_at is null
    returning a.*
  ),
  snooze_events as (
    insert into public.alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor)
    select s.tenant_id, s.id, s.lead_id, s.type, 'snoozed', s.severity, v_actor
    from snoozed s
    returning 1
  ),
  answered as (
    select q.id, q.n,
           case when exists (select from resolved r where r.id = q.alert_id)
                  or exists (select from snoozed s where s.id = q.alert_id) then 'done'
                when q.alert_id is not null then 'already_resolved'
                else 'not_found' end as result
    from asked q
  )
  select jsonb_build_object(
    'results', jsonb_agg(jsonb_build_object('id', a.id, 'result', a.result) order by a.n),
    'done', count(*) filter (where a.result = 'done'))
  into v_result
  from answered a;
  return v_result;
end
$function$
;
grant execute on function public.act_on_alerts(text, text, jsonb, timestamptz, text) to authenticated, service_role;

/**
 * Snooze one alert until `p_until` (at most 30 days ahead): it leaves the active list until the
 * sweep wakes it. Snoozing a snoozed alert moves its time; a resolved alert is a conflict.
 */
create or replace function public.snooze_alert(p_tenant text, p_alert_id uuid, p_until timestamp with time zone, p_actor text DEFAULT 'user_manual'::text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
declare
  v_result text;
begin
  v_result := public.act_on_alerts(p_tenant, 'snooze', jsonb_build_array(p_alert_id), p_until, p_actor)
              -> 'results' -> 0 ->> 'result';
  if v_result = 'not_found' then
    perform public.raise_error('LW404', 'alert not found', 'id');
  elsif v_result = 'already_resolved' then
    perform public.raise_error('LW409', 'the alert is resolved', 'id');
  end if;
  return jsonb_build_object('alert', (select public.alert_brief(a) from public.max_alerts a
                                      where a.tenant_id = p_tenant and a.id = p_alert_id));
end
$function$
;
grant execute on function public.snooze_alert(text, uuid, timestamptz, text) to authenticated, service_role;

/** Bring a snoozed alert back to the active list now. Idempotent; a resolved alert is a conflict. */
create or replace function public.unsnooze_alert(p_tenant text, p_alert_id uuid, p_actor text DEFAULT 'user_manual'::text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  v_alert public.max_alerts;
  v_actor text := case when public.is_trusted_caller() then p_actor else (select auth.jwt()) ->> 'sub' end;
begin
  perform public.assert_acts_in(p_tenant);
  select * into v_alert from public.max_alerts a where a.id = p_alert_id and a.tenant_id = p_tenant for update;
  if not found or not public.can_see_lead(v_alert.tenant_id, v_alert.lead_id) then
    perform public.raise_error('LW404', 'alert not found', 'id');
  end if;
  if v_alert.resolved_at is not null then
    perform public.raise_error('LW409', 'the alert is resolved', 'id');
  end if;
  if v_alert.snoozed_until is not null then
    update public.max_alerts a set snoozed_until = null where a.tenant_id = p_tenant and a.id = p_alert_id returning * into v_alert;
    insert into public.alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor)
    values (v_alert.tenant_id, v_alert.id, v_alert.lead_id, v_alert.type, 'unsnoozed', v_alert.severity, v_actor);
  end if;
  return jsonb_build_object('alert', public.alert_brief(v_alert));
end
$function$
;
grant execute on function public.unsnooze_alert(text, uuid, text) to authenticated, service_role;

/**
 * An alert and its history, oldest event first (created, escalated, snoozed, reopened, resolved...,
 * each with its actor, time and the severity after it). Runs as the caller: an alert they may not
 * see is not found.
 */
create or replace function public.alert_history(p_tenant text, p_alert_id uuid) returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_alert public.max_alerts;
  v_lead  public.leads;
begin
  select * into v_alert from public.max_alerts a where a.id = p_alert_id and a.tenant_id = p_tenant;
  if not found then
    perform public.raise_error('LW404', 'alert not found', 'id');
  end if;
  select * into v_lead from public.leads l where l.tenant_id = p_tenant and l.lead_id = v_alert.lead_id;
  return jsonb_build_object(
    'alert', public.alert_json(v_alert, v_lead.name, v_lead.email),
    'events', coalesce((select jsonb_agg(jsonb_build_object('event', e.event, 'severity', e.severity,
                                                            'actor', e.actor, 'at', e.at) order by e.id)
                        from public.alert_events e
                        where e.tenant_id = p_tenant and e.lead_id = v_alert.lead_id and e.alert_id = p_alert_id), '[]'));
end
$$;
grant execute on function public.alert_history(text, uuid) to authenticated, service_role;

/** Every alert of a lead, active and past, newest first, one page at a time. Runs as the caller. */
create or replace function public.list_lead_alerts(
  p_tenant  text,
  p_lead_id text,
  p_limit   integer default 50,
  p_cursor  jsonb default null
) returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_lead   public.leads;
  v_result jsonb;
begin
  perform public.check_page(p_limit, p_cursor, array['c', 'i']);
  select * into v_lead from public.leads l where l.tenant_id = p_tenant and l.lead_id = p_lead_id;
  if not found and not exists (select from public.lead_state s where s.tenant_id = p_tenant and s.lead_id = p_lead_id) then
    perform public.raise_error('LW404', 'lead not found', 'leadId');
  end if;

  with page as (
    select a, row_number() over (order by a.created_at desc, a.id desc) as n
    from public.max_alerts a
    where a.tenant_id = p_tenant and a.lead_id = p_lead_id
      and (p_cursor is null
           or (a.created_at, a.id) < ((p_cursor ->> 'c')::timestamptz, (p_cursor ->> 'i')::uuid))
    order by a.created_at desc, a.id desc
    limit p_limit + 1
  )
  select jsonb_build_object(
    'alerts', coalesce((select jsonb_agg(public.alert_json(p.a, v_lead.name, v_lead.email) order by p.n)
                        from page p where p.n <= p_limit), '[]'),
    'next_cursor', (select jsonb_build_object('c', (p.a).created_at, 'i', (p.a).id)
                    from page p where p.n = p_limit and exists (select from page q where q.n > p_limit)))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.list_lead_alerts(text, text, integer, jsonb) to authenticated, service_role;

/**
 * Wake the snoozed alerts whose time has come (by `p_now`): back to the active list (`reopened`)
 * with the severity their ladder gives by then (never lower) if their condition still holds, else
 * resolved (`rule`). An activity that answered one has already resolved it. Alerts another
 * transaction is changing are left for the next sweep.
 */
create or replace function public.wake_snoozed_alerts(p_tenant text, p_now timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
declare
  v_result jsonb;
begin
  with woken as (
    select a.id, a.tenant_id, a.lead_id, a.type, a.severity
    from public.max_alerts a
    where a.resolved_at is null and a.snoozed_until <= p_now and (p_tenant is null or a.tenant_id = p_tenant)
    for update skip locked
  ),
  -- The ingest-time alerts hold until an activity answers them; the others, while their silence lasts.
  judged as (
    select w.id, w.tenant_id, w.severity as was,
      case
        when r.enabled is not true then null
        when w.type in ('HotLead24h', 'PreferredChannel') then w.severity
        when c.since is null or p_now - c.since < r.threshold then null
        when p_now - c.since >= r.escalate_after then r.escalated_severity
        else r.severity
      end::public.severity as severity
    from woken w
    left join public.lead_state s on s.tenant_id = w.tenant_id and s.lead_id = w.lead_id
    cross join lateral (select case w.type
      when 'NoReply3d' then case when s.last_outbound_at > coalesce(s.last_inbound_at, '-infinity') then s.last_outbound_at end
      when 'HighValueRisk' then case when s.high_value then coalesce(s.last_activity_at, s.entered_at) end
      else coalesce(s.last_activity_at, s.entered_at)
    end as since) c
    left join lateral (select * from public.rules_for(w.tenant_id) x where x.type = w.type) r on true
  ),
  reopened as (
    update public.max_alerts a
    set snoozed_until = null,
        severity = case when j.severity = 'high' or (j.severity = 'med' and a.severity = 'low') then j.severity
                        else a.severity end,
        escalated_at = case when j.severity is distinct from a.severity
                             and (j.severity = 'high' or (j.severity = 'med' and a.severity = 'low'))
                            then now() else a.escalated_at end
    from judged j
    where a.tenant_id = j.tenant_id and a.id = j.id and j.severity is not null
    returning a.*
  ),
  reopen_events as (
    insert into public.alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor)
    select r.tenant_id, r.id, r.lead_id, r.type, 'reopened', r.severity, 'system'
    from reopened r
    returning 1
  ),
  resolved as (
    update public.max_alerts a
    set resolved_at = now(), resolved_by = 'system', resolution = 'rule'
    from judged j
    where a.tenant_id = j.tenant_id and a.id = j.id and j.severity is null
    returning 1
  )
  select jsonb_build_object('reopened', (select count(*) from reopen_events), 'resolved', (select count(*) from resolved))
  into v_result;
  return v_result;
end
$function$
;
grant execute on function public.wake_snoozed_alerts(text, timestamptz) to service_role;

/**
 * Mark overdue, once, every high alert still unresolved (and not snoozed) past its tenant's delay
 * (`overdue_after`, default 24 h) since it became high, recording an `overdue` event for the
 * notifications to deliver. Answers how many it marked.
 */
create or replace function public.mark_overdue_alerts(p_tenant text, p_now timestamp with time zone)
 RETURNS integer
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
declare
  v_marked integer;
begin
  with candidates as (
    select a.id, a.tenant_id, a.type, coalesce(a.escalated_at, a.created_at) as high_since
    from public.max_alerts a
    where a.resolved_at is null and a.severity_rank = 1 and a.overdue_at is null and a.snoozed_until is null
      and coalesce(a.escalated_at, a.created_at) <= p_now - (select min(r.overdue_after) from public.alert_rules r)
      and coalesce(a.escalated_at, a.created_at) < now()  -- not one this very sweep made high (p_now may run ahead)
      and (p_tenant is null or a.tenant_id = p_tenant)
    for update skip locked
  ),
  marked as (
    update public.max_alerts a
    set overdue_at = p_now
    from candidates c
    cross join lateral (select x.overdue_after from public.rules_for(c.tenant_id) x where x.type = c.type) r
    where a.tenant_id = c.tenant_id and a.id = c.id and c.high_since <= p_now - r.overdue_after
    returning a.*
  ),
  events as (
    insert into public.alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor)
    select m.tenant_id, m.id, m.lead_id, m.type, 'overdue', m.severity, 'system'
    from marked m
    returning 1
  )
  select count(*) into v_marked from events;
  return v_marked;
end
$function$
;
grant execute on function public.mark_overdue_alerts(text, timestamptz) to service_role;

-- =================================================================================================
-- supabase/schemas/40_rules.sql
-- =================================================================================================

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
              "en": "Hello {name}, just following up: have you been able to move forward with your project? Happy to talk whenever suits you."}}'),
  ('NoReply3d', '3 days', 'med', '7 days', 'high', null, null, null,
   '{"fr": "Pas de réponse depuis {days} jours à notre dernier message.",
     "en": "No reply for {days} days to our last message."}',
   '{"label": {"fr": "Relancer par WhatsApp", "en": "Follow up on WhatsApp"},
     "action": "send_whatsapp", "params": {"template": "relance_sans_reponse"},
     "text": {"fr": "Bonjour {name}, avez-vous bien reçu mon dernier message ? N''hésitez pas si vous avez des questions.",
              "en": "Hello {name}, did you get my last message? Let me know if you have any questions."}}'),
  ('StaleLead30d', '30 days', 'low', null, null, null, null, 'NoContact7d',
   '{"fr": "Aucune activité depuis {days} jours. Lead à requalifier.",
     "en": "No activity for {days} days. Lead needs requalifying."}',
   '{"label": {"fr": "Relancer par WhatsApp", "en": "Follow up on WhatsApp"},
     "action": "send_whatsapp", "params": {"template": "reactivation"},
     "text": {"fr": "Bonjour {name}, cela fait un moment ! Votre projet est-il toujours d''actualité ?",
              "en": "Hello {name}, it has been a while! Is your project still on?"}}'),
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
              "en": "Hello {name}, thank you for your messages! I will get back to you right away."}}'),
  ('PreferredChannel', null, 'low', 3,
   '{"fr": "Le lead préfère le canal {channel}, mais nos 2 derniers messages sont passés par un autre canal.",
     "en": "The lead prefers {channel}, but our last 2 messages went through another channel."}',
   '{"label": {"fr": "Recontacter sur son canal préféré", "en": "Reach out on their preferred channel"},
     "action": "switch_channel", "params": {}}');

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
 * What `log_activity` needs from the rules in force for a tenant, in one row: the thresholds of
 * the time-based rules (null where disabled) and the settings of the ingest-time rules (their
 * `min_count` null where disabled). A table function so that Postgres inlines it.
 */
create or replace function public.rules_at_ingest(p_tenant text)
returns table (no_contact interval, no_reply interval, stale interval, high_value interval,
               hot_window interval, hot_count smallint, preferred_window interval, preferred_count smallint)
language sql stable
as $$
  select max(r.threshold) filter (where r.type = 'NoContact7d' and r.enabled),
         max(r.threshold) filter (where r.type = 'NoReply3d' and r.enabled),
         max(r.threshold) filter (where r.type = 'StaleLead30d' and r.enabled),
         max(r.threshold) filter (where r.type = 'HighValueRisk' and r.enabled),
         max(r.threshold) filter (where r.type = 'HotLead24h' and r.enabled),
         max(r.min_count) filter (where r.type = 'HotLead24h' and r.enabled),
         max(r.threshold) filter (where r.type = 'PreferredChannel' and r.enabled),
         max(r.min_count) filter (where r.type = 'PreferredChannel' and r.enabled)
  from public.rules_for(p_tenant) r
$$;
grant execute on function public.rules_at_ingest(text) to authenticated, service_role;

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

/** A rule as the API shows it; `source` says whether it is the default or the tenant's own. */
create or replace function public.rule_json(p_rule public.alert_rules) returns jsonb
language sql immutable
as $$
  select jsonb_build_object(
    'type', p_rule.type, 'enabled', p_rule.enabled, 'threshold', public.duration_text(p_rule.threshold),
    'severity', p_rule.severity, 'escalate_after', public.duration_text(p_rule.escalate_after),
    'escalated_severity', p_rule.escalated_severity, 'min_count', p_rule.min_count,
    'min_value', p_rule.min_value, 'currency', p_rule.currency, 'supersedes', p_rule.supersedes,
    'locale', p_rule.locale, 'messages', p_rule.messages, 'action', p_rule.action,
    'overdue_after', public.duration_text(p_rule.overdue_after),
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
 * value threshold first, and the alerts of leads no longer watched are resolved (`rule`).
 */
create or replace function public.recompute_due_times(p_tenant text, p_type text) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_rule public.alert_rules;
begin
  select * into v_rule from public.rules_for(p_tenant) r where r.type = p_type;

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
    when a.severity is null then c.since + v_rule.threshold
    when a.severity is distinct from v_rule.escalated_severity then c.since + v_rule.escalate_after
  end as due_at) d
  where o.tenant_id = p_tenant and s.tenant_id = o.tenant_id and s.lead_id = o.lead_id;
end
$$;
grant execute on function public.recompute_due_times(text, text) to service_role;

/**
 * Change the tenant's rule of one type: the fields present in `p_changes` (enabled, threshold,
 * severity, escalate_after, escalated_severity, min_count, min_value, currency, locale, messages
 * and action_text per locale — merged into what is in force —, overdue_after) replace those of the
 * rule in force, into the tenant's own row. Validated: a threshold is positive, a ladder rises
 * (later and higher), the messages include the rule's locale. Takes effect at once for every lead
 * of the tenant: stored due times are recomputed, and a disabled rule's active alerts resolved
 * (`rule`). Admins of the tenant and platform staff only.
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

-- =================================================================================================
-- supabase/schemas/50_sweep.sql
-- =================================================================================================

-- The sweep: raises, escalates and supersedes the time-based alerts of the leads that became due.

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Functions ---------------------------------------------------------------------------------------

-- The sweep whatever the statistics say. A tenant that has just imported its leads (statistics on
-- lead_state taken before: its due leads estimated at one row) into an empty, never-analysed
-- max_alerts made the planner pick nested loops that rescan their inner side for every due row
-- (max_alerts once per raised alert, the judged rules once per judged rule): 44x a bare insert of
-- the same rows. Every join in the sweep's statement is between sets the size of the due leads, so
-- when there are many, sweep_alerts plans it with hash joins only: linear in the due leads whatever
-- the estimate. A few due leads keep the planner's choice (index probes of their own alerts and
-- state), which at that size costs little even when the estimate is wrong. raise_due_alerts is
-- planned at each call, with the join methods the call allows (a cached plan would keep the first).

/**
 * The scheduled sweep, for every tenant or one: raise, escalate and supersede the time-based
 * alerts of the leads that fell due by `p_now`, wake the snoozed alerts whose time has come, and
 * mark the overdue ones. One transaction. With 1,000 due leads or more, the raising statement
 * joins by hashing only (the note above says why).
 */
create or replace function public.sweep_alerts(p_tenant text default null, p_now timestamptz default now())
returns jsonb
language plpgsql
set search_path = ''
set work_mem = '16MB'  -- sized for a 1 GB instance, like raise_due_alerts
as $$
declare
  v_nestloop text := current_setting('enable_nestloop');
  v_raised   jsonb;
  v_woken    jsonb;
  v_overdue  integer;
begin
  if (select count(*) from (select from public.lead_state s
                            where s.next_due_at <= p_now and (p_tenant is null or s.tenant_id = p_tenant)
                            limit 1000) d) >= 1000 then
    perform set_config('enable_nestloop', 'off', true);
  end if;
  v_raised := public.raise_due_alerts(p_tenant, p_now);
  perform set_config('enable_nestloop', v_nestloop, true);
  v_woken := public.wake_snoozed_alerts(p_tenant, p_now);
  v_overdue := public.mark_overdue_alerts(p_tenant, p_now);
  return v_raised || jsonb_build_object(
    'resolved', (v_raised ->> 'resolved')::integer + (v_woken ->> 'resolved')::integer,
    'reopened', v_woken -> 'reopened',
    'overdue', v_overdue);
end
$$;
grant execute on function public.sweep_alerts(text, timestamptz) to service_role;

/**
 * Raise, escalate and supersede the time-based alerts of every lead that fell due by `p_now`
 * (one tenant, or all of them), then move each lead's due times on to the next step of its
 * ladder. One statement: concurrent sweeps wait on the same state rows, re-check them, and find
 * nothing left to do; the unique index on active alerts is the last word on duplicates.
 */
create or replace function public.raise_due_alerts(p_tenant text default null, p_now timestamptz default now())
returns jsonb
language plpgsql
set search_path = ''
set work_mem = '16MB'                        -- sized for a 1 GB instance (README, "Performance")
set plan_cache_mode = force_custom_plan      -- planned with the join methods each call allows
as $$
declare
  v_result jsonb;
begin
  for v_attempt in 1..3 loop
    begin
      with due as (
        select s.tenant_id, s.lead_id, s.no_contact_due_at, s.no_reply_due_at, s.stale_due_at, s.high_value_due_at,
               coalesce(s.last_activity_at, s.entered_at) as silent_since, s.last_outbound_at
        from public.lead_state s
        where s.next_due_at <= p_now and (p_tenant is null or s.tenant_id = p_tenant)
        for update
      ),
      -- The rules in force for each tenant with due leads, their message and action rendered once.
      rules as (
        select distinct on (t.tenant_id, r.type)
               t.tenant_id, r.type, r.enabled, r.threshold, r.severity, r.escalate_after, r.escalated_severity,
               r.supersedes,
               coalesce(r.messages ->> r.locale, r.messages ->> 'fr') as message,
               jsonb_build_object('label', coalesce(r.action -> 'label' ->> r.locale, r.action -> 'label' ->> 'fr'),
                                  'action', r.action ->> 'action',
                                  'params', coalesce(r.action -> 'params', '{}'::jsonb)) as action
        from (select distinct d.tenant_id from due d) t
        join public.alert_rules r on r.tenant_id in (t.tenant_id, '*')
        order by t.tenant_id, r.type, r.tenant_id = '*'
      ),
      -- Each rule whose due time has come, with the moment its condition began to hold, and the
      -- severity its ladder gives today and when its next step falls due (null: no further step).
      judged as (
        select d.tenant_id, d.lead_id, c.type, c.since, r.supersedes,
          case
            when r.enabled is not true or c.since is null then null
            when p_now - c.since >= r.escalate_after then r.escalated_severity
            when p_now - c.since >= r.threshold then r.severity
          end::public.severity as severity,
          case
            when r.enabled is not true or c.since is null then null
            when p_now - c.since < r.threshold then c.since + r.threshold
            when p_now - c.since < r.escalate_after then c.since + r.escalate_after
          end as next_due_at
        from due d
        cross join lateral (values
          ('NoContact7d'::public.alert_type, d.no_contact_due_at, d.silent_since),
          ('NoReply3d',                      d.no_reply_due_at,   d.last_outbound_at),
          ('StaleLead30d',                   d.stale_due_at,      d.silent_since),
          ('HighValueRisk',                  d.high_value_due_at, d.silent_since)
        ) as c (type, due_at, since)
        left join rules r on r.tenant_id = d.tenant_id and r.type = c.type
        where c.due_at <= p_now
      ),
      raised as (
        select j.tenant_id, j.lead_id, j.type, j.since, j.severity, j.supersedes
        from judged j
        where j.severity is not null
          and not exists (select from judged s
                          where s.supersedes = j.type and s.severity is not null
                            and s.tenant_id = j.tenant_id and s.lead_id = j.lead_id)
      ),
      -- Each raised rule with the lead's active alert of its type, if it has one: one lookup.
      matched as (
        select r.tenant_id, r.lead_id, r.type, r.since, r.severity, a.id as alert_id, a.severity_rank
        from raised r
        left join public.max_alerts a
          on a.tenant_id = r.tenant_id and a.lead_id = r.lead_id and a.type = r.type and a.resolved_at is null
             and (p_tenant is null or a.tenant_id = p_tenant)  -- a tenant's sweep reads its own alerts
      ),
      -- A rule raised on a lead with no active alert of its type creates one...
      created as (
        insert into public.max_alerts (tenant_id, lead_id, type, severity, message, suggested_action, cycle_started_at)
        select m.tenant_id, m.lead_id, m.type, m.severity,
               replace(u.message, '{days}', floor(extract(epoch from p_now - m.since) / 86400)::integer::text),
               jsonb_set(u.action, '{params,leadId}', to_jsonb(m.lead_id)),
               m.since
        from matched m
        join rules u on u.tenant_id = m.tenant_id and u.type = m.type
        where m.alert_id is null
        returning type
      ),
      -- ...and on a lead that has one, raises its severity in place (never lowers it).
      escalated as (
        update public.max_alerts a
        set severity = m.severity, escalated_at = now(),
            message = replace(u.message, '{days}', floor(extract(epoch from p_now - m.since) / 86400)::integer::text)
        from matched m
        join rules u on u.tenant_id = m.tenant_id and u.type = m.type
        where m.alert_id is not null
          and (case m.severity when 'high' then 1 when 'med' then 2 else 3 end) < m.severity_rank
          and a.tenant_id = m.tenant_id and a.id = m.alert_id and a.resolved_at is null
          and (p_tenant is null or a.tenant_id = p_tenant)
          and (case m.severity when 'high' then 1 when 'med' then 2 else 3 end) < a.severity_rank
        returning a.id
      ),
      superseded as (
        update public.max_alerts a
        set resolved_at = now(), resolved_by = 'system', resolution = 'superseded'
        from raised r
        where r.supersedes is not null
          and a.tenant_id = r.tenant_id and a.lead_id = r.lead_id and a.type = r.supersedes and a.resolved_at is null
          and (p_tenant is null or a.tenant_id = p_tenant)
        returning a.id
      ),
      moved as (
        update public.lead_state s set
          no_contact_due_at = case when m.no_contact then m.no_contact_due_at else s.no_contact_due_at end,
          no_reply_due_at   = case when m.no_reply   then m.no_reply_due_at   else s.no_reply_due_at end,
          stale_due_at      = case when m.stale      then m.stale_due_at      else s.stale_due_at end,
          high_value_due_at = case when m.high_value then m.high_value_due_at else s.high_value_due_at end
        from (
          select j.tenant_id, j.lead_id,
                 bool_or(j.type = 'NoContact7d')   as no_contact, max(j.next_due_at) filter (where j.type = 'NoContact7d')   as no_contact_due_at,
                 bool_or(j.type = 'NoReply3d')     as no_reply,   max(j.next_due_at) filter (where j.type = 'NoReply3d')     as no_reply_due_at,
                 bool_or(j.type = 'StaleLead30d')  as stale,      max(j.next_due_at) filter (where j.type = 'StaleLead30d')  as stale_due_at,
                 bool_or(j.type = 'HighValueRisk') as high_value, max(j.next_due_at) filter (where j.type = 'HighValueRisk') as high_value_due_at
          from judged j
          group by j.tenant_id, j.lead_id
        ) m
        where s.tenant_id = m.tenant_id and s.lead_id = m.lead_id
          and s.next_due_at <= p_now and (p_tenant is null or s.tenant_id = p_tenant)  -- the due rows, by index
        returning 1
      )
      select jsonb_build_object(
        'created', (select jsonb_build_object(
                      'NoContact7d',   count(*) filter (where c.type = 'NoContact7d'),
                      'NoReply3d',     count(*) filter (where c.type = 'NoReply3d'),
                      'StaleLead30d',  count(*) filter (where c.type = 'StaleLead30d'),
                      'HighValueRisk', count(*) filter (where c.type = 'HighValueRisk'))
                    from created c),
        'escalated', (select count(*) from escalated),
        'resolved', (select count(*) from superseded),
        'leads_checked', (select count(*) from moved))
      into v_result;
      return v_result;
    exception when unique_violation then
      -- Another path opened an alert of the same type for a due lead while this statement ran
      -- (its snapshot could not see it): judge again, with a snapshot that does.
      if v_attempt = 3 then
        raise;
      end if;
    end;
  end loop;
  return null;  -- not reached: the last attempt returns or raises
end
$$;
grant execute on function public.raise_due_alerts(text, timestamptz) to service_role;

-- =================================================================================================
-- supabase/schemas/60_whatsapp.sql
-- =================================================================================================

-- WhatsApp: activities logged by phone number (Green-API), message statuses, the follow-up an
-- alert sends, and the notifications we could not read (kept whole).

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Tables ------------------------------------------------------------------------------------------

create table public.greenapi_rejected (
  id          uuid not null default public.uuid_v7(),
  tenant_id   text not null,
  instance_id text not null,               -- the Green-API instance whose webhook token came with it
  payload     jsonb,                       -- the notification, when it is JSON PostgreSQL can store
  raw         bytea,                       -- else the body exactly as received
  reason      text not null,               -- why it could not be read
  received_at timestamptz not null default now(),
  constraint greenapi_rejected_pkey primary key (tenant_id, id),  -- tenant first: every key leads with it
  constraint greenapi_rejected_payload_or_raw check (num_nonnulls(payload, raw) = 1)
);

create index idx_greenapi_rejected_tenant on public.greenapi_rejected (tenant_id, received_at desc, id desc);

-- Grants and row-level security -------------------------------------------------------------------

grant select on table public.greenapi_rejected to authenticated;
grant select, insert on table public.greenapi_rejected to service_role;

alter table public.greenapi_rejected enable row level security;

-- Policies ----------------------------------------------------------------------------------------

create policy "Rejected notifications are visible to admins and managers of their tenant"
  on public.greenapi_rejected
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant()) and (select public.sees_whole_tenant())));

-- Functions ---------------------------------------------------------------------------------------

/**
 * Log a WhatsApp activity of the lead whose phone (E.164) it is. An unknown number becomes a
 * provisional lead (named after the sender) so that nothing is lost — unless `p_create` is false,
 * when nothing is written and `{unknown_phone: true}` is returned (the caller may look the number
 * up in the CRM first). `@lid` chats with no phone are keyed by their chat id. Service only.
 */
create or replace function public.log_activity_by_phone(
  p_tenant          text,
  p_chat_id         text,
  p_direction       text,
  p_phone           text default null,
  p_sender_name     text default null,
  p_channel         text default 'whatsapp',
  p_status          text default 'sent',
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
  v_id   text := 'wa:' || coalesce(p_phone, p_chat_id);
begin
  perform public.assert_acts_in(p_tenant, '{}');
  select * into v_lead from public.leads l
  where l.tenant_id = p_tenant and (l.phone = p_phone or (p_phone is null and l.lead_id = v_id));
  if not found then
    if not p_create then
      return jsonb_build_object('unknown_phone', true);
    end if;
    insert into public.leads (tenant_id, lead_id, name, phone, provisional)
    values (p_tenant, v_id, p_sender_name, p_phone, true)
    on conflict do nothing;
    select * into v_lead from public.leads l
    where l.tenant_id = p_tenant and (l.phone = p_phone or (p_phone is null and l.lead_id = v_id));
  end if;
  return public.log_activity(p_tenant, v_lead.lead_id, p_channel, p_direction, p_status, p_message_snippet,
                             p_meta, p_occurred_at, p_external_id)
         || jsonb_build_object('lead', public.lead_json(v_lead));
end
$$;
grant execute on function public.log_activity_by_phone(text, text, text, text, text, text, text, text, jsonb, timestamptz, text, boolean) to service_role;

/** Delivery statuses only move forward: sent → delivered → read, or to a failure. */
create or replace function public.status_rank(p_status text) returns integer
language sql immutable
as $$
  select case lower(p_status) when 'sent' then 1 when 'delivered' then 2 when 'read' then 3
                              when 'failed' then 4 when 'noaccount' then 4 when 'notingroup' then 4
                              when 'yellowcard' then 4 else 0 end
$$;
grant execute on function public.status_rank(text) to service_role;

/**
 * Record a delivery status of an activity logged with an external id (Green-API's
 * outgoingMessageStatus). Statuses only move forward, and a failure is final. A send that turns
 * out to have failed no longer counts as contact: its lead's state is rebuilt without it and the
 * alerts it resolved are reopened (unless one of the same type is already active).
 */
create or replace function public.set_activity_status(p_tenant text, p_channel text, p_external_id text, p_status text)
returns jsonb
language plpgsql
security definer  -- rebuilds lead_state and reopens alerts
set search_path = ''
as $$
declare
  v_old      public.lead_activities;
  v_new      public.lead_activities;
  v_reopened jsonb := '[]'::jsonb;
begin
  perform public.assert_acts_in(p_tenant, '{}');
  select * into v_old from public.lead_activities a
  where a.tenant_id = p_tenant and a.channel = p_channel and a.external_id = p_external_id
  for update;
  if not found then
    return jsonb_build_object('found', false);
  end if;
  if public.status_rank(p_status) < public.status_rank(v_old.status)
     or not public.counts_as_contact(v_old.status) then
    return jsonb_build_object('found', true, 'activity', public.activity_json(v_old), 'reopened', v_reopened);
  end if;

  update public.lead_activities a set status = p_status
  where a.tenant_id = v_old.tenant_id and a.id = v_old.id
  returning * into v_new;
  if public.counts_as_contact(v_old.status) and not public.counts_as_contact(p_status) then
    perform from public.lead_state s where s.tenant_id = p_tenant and s.lead_id = v_old.lead_id for update;
    perform public.refresh_lead_state(p_tenant, v_old.lead_id);
    with reopened as (
      update public.max_alerts a
      set resolved_at = null, resolved_by = null, resolution = null, resolved_by_activity = null
      where a.resolved_by_activity = v_old.id
        and not exists (select from public.max_alerts b
                        where b.tenant_id = a.tenant_id and b.lead_id = a.lead_id and b.type = a.type
                          and b.resolved_at is null)
      returning a.type
    )
    select coalesce(jsonb_agg(r.type order by r.type), '[]') into v_reopened from reopened r;
  end if;
  return jsonb_build_object('found', true, 'activity', public.activity_json(v_new), 'reopened', v_reopened);
end
$$;
grant execute on function public.set_activity_status(text, text, text, text) to service_role;

/**
 * What a WhatsApp follow-up needs: the lead (with its phone) and, for an alert's suggested action,
 * the alert and the message its rule sends in the tenant's language. Runs as the caller: an alert
 * or lead they may not see is not found.
 */
create or replace function public.prepare_whatsapp(p_tenant text, p_alert_id uuid default null, p_lead_id text default null)
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
  if p_alert_id is not null then
    select * into v_alert from public.max_alerts a where a.id = p_alert_id and a.tenant_id = p_tenant;
    if not found then
      perform public.raise_error('LW404', 'alert not found', 'id');
    end if;
    if v_alert.suggested_action ->> 'action' is distinct from 'send_whatsapp' then
      perform public.raise_error('LW422', format('the action %s of this alert is not one leadwatch runs',
                                                 coalesce(v_alert.suggested_action ->> 'action', '(none)')), 'action');
    end if;
    select * into v_rule from public.rules_for(p_tenant) r where r.type = v_alert.type;
    v_text := coalesce(v_rule.action -> 'text' ->> v_rule.locale, v_rule.action -> 'text' ->> 'fr');
  end if;

  select * into v_lead from public.leads l where l.tenant_id = p_tenant and l.lead_id = coalesce(v_alert.lead_id, p_lead_id);
  if not found then
    perform public.raise_error('LW404', 'lead not found in the directory', 'leadId');
  end if;
  if v_lead.phone is null then
    perform public.raise_error('LW422', 'the lead has no phone number', 'phone');
  end if;
  return jsonb_build_object(
    'lead', public.lead_json(v_lead),
    'alert_type', v_alert.type,
    'text', replace(v_text, ' {name}', coalesce(' ' || v_lead.name, '')));
end
$$;
grant execute on function public.prepare_whatsapp(text, uuid, text) to authenticated, service_role;

/**
 * Keep a notification that could not be read: its JSON (`p_payload`), or its body as received
 * (`p_raw`) when it is not JSON PostgreSQL can store. Service only (the webhook).
 */
create or replace function public.reject_greenapi_notification(
  p_tenant      text,
  p_instance_id text,
  p_reason      text,
  p_payload     jsonb default null,
  p_raw         bytea default null
) returns jsonb
language sql
set search_path = ''
as $$
  insert into public.greenapi_rejected (tenant_id, instance_id, reason, payload, raw)
  values (p_tenant, p_instance_id, left(p_reason, 500), p_payload, p_raw)
  returning jsonb_build_object('id', id)
$$;
grant execute on function public.reject_greenapi_notification(text, text, text, jsonb, bytea) to service_role;

/**
 * One page of a tenant's rejected notifications, newest first: to admins and managers of the
 * tenant, platform staff and the service. The raw body (when not JSON) comes base64-encoded.
 */
create or replace function public.list_greenapi_rejected(
  p_tenant text,
  p_limit  integer default 50,
  p_cursor jsonb default null
) returns jsonb
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
    from public.greenapi_rejected r
    where r.tenant_id = p_tenant
      and (p_cursor is null
           or (r.received_at, r.id) < ((p_cursor ->> 'o')::timestamptz, (p_cursor ->> 'i')::uuid))
    order by r.received_at desc, r.id desc
    limit p_limit + 1
  )
  select jsonb_build_object(
    'rejected', coalesce((select jsonb_agg(jsonb_build_object(
                            'id', (p.r).id, 'instance_id', (p.r).instance_id, 'reason', (p.r).reason,
                            'received_at', (p.r).received_at, 'payload', (p.r).payload,
                            'raw_base64', encode((p.r).raw, 'base64')) order by p.n)
                          from page p where p.n <= p_limit), '[]'),
    'next_cursor', (select jsonb_build_object('o', (p.r).received_at, 'i', (p.r).id)
                    from page p where p.n = p_limit and exists (select from page q where q.n > p_limit)))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.list_greenapi_rejected(text, integer, jsonb) to authenticated, service_role;

-- =================================================================================================
-- supabase/schemas/70_analytics.sql
-- =================================================================================================

-- Analytics and exports: the alert lifecycle by day (live, or from day summaries kept up to date)
-- and the CSV exports of alerts and activities.

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Tables ------------------------------------------------------------------------------------------

/** One local day of a tenant's alert history in one time zone, for one owner and one alert type.
 * owner_key '' is "no owner", '*' every owner; type_key '*' every type. The ('*', '*') row exists
 * for every summarised day (zeros included): it marks the day as summarised. */
create table public.alert_day_rollups (
  tenant_id   text not null,
  tz          text not null,
  day         date not null,
  owner_key   text not null,
  type_key    text not null,
  created     integer not null,  -- events of the day, by event
  escalated   integer not null,
  resolved    integer not null,
  resolutions integer not null,  -- alerts whose resolved_at falls in the day
  within_24h  integer not null,  -- of which resolved within 24 h of creation
  cum         integer[] not null,  -- cum[b]: resolution times <= alert_rollup_edges()[b]
  hours       float8[] not null,   -- the resolution times in hours, ascending
  until       timestamptz,           -- on the ('*', '*') row of the open day: summarised up to here (null: whole day)
  built_at    timestamptz not null default now(),
  constraint alert_day_rollups_pkey primary key (tenant_id, tz, day, owner_key, type_key)
);

/** Per tenant: up to when 'reopened' events have been checked against the summaries. */
create table public.alert_rollup_marks (
  tenant_id    text not null,
  reopens_seen timestamptz not null,
  constraint alert_rollup_marks_pkey primary key (tenant_id)
);

-- Grants and row-level security -------------------------------------------------------------------

grant select on table public.alert_day_rollups to authenticated, service_role;
grant select on table public.alert_rollup_marks to service_role;

alter table public.alert_day_rollups enable row level security;
alter table public.alert_rollup_marks enable row level security;

-- Triggers ----------------------------------------------------------------------------------------

/** A truncated history (tests, restores): no summary survives it. */
create or replace function public.forget_all_alert_days() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from public.alert_day_rollups;
  return null;
end
$$;

create trigger alert_events_forget_rollups_on_truncate after truncate on public.alert_events
  for each statement execute function public.forget_all_alert_days();

/** A lead changing owner, entering the directory with history or leaving it: its days' summaries by owner change. */
create or replace function public.forget_reowned_alert_days() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_leads text[];
  v_tenant record;
begin
  if not exists (select from public.alert_day_rollups) then
    return null;
  end if;
  if tg_op = 'INSERT' then
    select array_agg(n.tenant_id || E'\n' || n.lead_id) into v_leads from new_leads n where n.owner_id is not null;
  elsif tg_op = 'DELETE' then
    select array_agg(o.tenant_id || E'\n' || o.lead_id) into v_leads from old_leads o where o.owner_id is not null;
  else
    select array_agg(n.tenant_id || E'\n' || n.lead_id) into v_leads
    from new_leads n join old_leads o on o.tenant_id = n.tenant_id and o.lead_id = n.lead_id
    where o.owner_id is distinct from n.owner_id;
  end if;
  for v_tenant in
    select e.tenant_id, array_agg(distinct e.at) as moments
    from unnest(v_leads) k
    join public.alert_events e on e.tenant_id = split_part(k, E'\n', 1) and e.lead_id = split_part(k, E'\n', 2)
    group by e.tenant_id
  loop
    perform public.forget_alert_rollups(v_tenant.tenant_id, v_tenant.moments);
  end loop;
  return null;
end
$$;

create trigger leads_forget_rollups_on_update after update on public.leads
  referencing old table as old_leads new table as new_leads
  for each statement execute function public.forget_reowned_alert_days();

create trigger leads_forget_rollups_on_insert after insert on public.leads
  referencing new table as new_leads
  for each statement execute function public.forget_reowned_alert_days();

create trigger leads_forget_rollups_on_delete after delete on public.leads
  referencing old table as old_leads
  for each statement execute function public.forget_reowned_alert_days();

/** History rewritten (merge_lead moving a lead's events, retention deleting them): drop the days' summaries. */
create or replace function public.forget_rewritten_alert_days() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_tenant record;
begin
  for v_tenant in select o.tenant_id, array_agg(distinct o.at) as moments from old_events o group by o.tenant_id loop
    perform public.forget_alert_rollups(v_tenant.tenant_id, v_tenant.moments);
  end loop;
  return null;
end
$$;

create trigger alert_events_forget_rollups_on_update after update on public.alert_events
  referencing old table as old_events
  for each statement execute function public.forget_rewritten_alert_days();

create trigger alert_events_forget_rollups_on_delete after delete on public.alert_events
  referencing old table as old_events
  for each statement execute function public.forget_rewritten_alert_days();

-- Policies ----------------------------------------------------------------------------------------

-- As the live figures: staff see their tenant's summaries, agents the rows of their own leads.
create policy "Summaries are visible to the staff of their tenant, and an agent's to the agent" on public.alert_day_rollups
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant())
             and ((select public.sees_whole_tenant())
                  or ((select public.current_app_role()) = 'agent'
                      and owner_key = (select auth.jwt()) ->> 'sub'))));

-- Functions ---------------------------------------------------------------------------------------

/**
 * The alerts' figures for the days `p_from` to `p_to` (inclusive) as lived in time zone `p_tz`:
 * - per_day: every day of the range, with the created, escalated and resolved events of that day;
 * - resolved_within_24h and time_to_resolve (median and p90 in hours, by type and by the lead's
 *   owner): the alerts whose resolution falls in the range, measured from creation to resolution;
 * - open_by_age: the alerts open now, by how long ago they were created.
 * Runs as the caller, so row-level security applies: an agent gets the figures of their own leads.
 * Invalid: a time zone Postgres does not know (tz), a range that ends before it starts or spans
 * more than 366 days (to).
 */
create or replace function public.alert_analytics_live(p_tenant text, p_from date, p_to date, p_tz text default 'UTC')
returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_start timestamptz;
  v_end   timestamptz;
  v_result jsonb;
begin
  begin
    v_start := p_from::timestamp at time zone p_tz;
    v_end := (p_to + 1)::timestamp at time zone p_tz;
  exception when invalid_parameter_value then
    perform public.raise_error('LW422', 'unknown time zone', 'tz');
  end;
  if p_to < p_from or p_to - p_from >= 366 then
    perform public.raise_error('LW422', 'the range must end on or after its start and span at most 366 days', 'to');
  end if;

  -- Counted by quarter of an hour first (every time zone's offset is a whole number of quarters,
  -- so none straddles a local midnight), then by local day: the zone is applied per quarter, not per event.
  with quarters as (
    select date_bin('15 minutes', e.at, timestamptz '2000-01-01 00:00+00') as quarter,
           count(*) filter (where e.event = 'created') as created,
           count(*) filter (where e.event = 'resolved') as resolved,
           count(*) filter (where e.event = 'escalated') as escalated
    from public.alert_events e
    where e.tenant_id = p_tenant and e.at >= v_start and e.at < v_end
      and e.event in ('created', 'escalated', 'resolved')
    group by 1
  ),
  per_day as (
    select (q.quarter at time zone p_tz)::date as day,
           sum(q.created) as created, sum(q.resolved) as resolved, sum(q.escalated) as escalated
    from quarters q
    group by 1
  ),
  resolved as (
    select a.type, l.owner_id, (extract(epoch from a.resolved_at - a.created_at) / 3600)::float8 as hours
    from public.max_alerts a
    left join public.leads l on l.tenant_id = a.tenant_id and l.lead_id = a.lead_id
    where a.tenant_id = p_tenant and a.resolved_at >= v_start and a.resolved_at < v_end
  ),
  by_type as (
    select r.type, count(*) as count,
           round(percentile_cont(0.5) within group (order by r.hours)::numeric, 2) as median_hours,
           round(percentile_cont(0.9) within group (order by r.hours)::numeric, 2) as p90_hours
    from resolved r group by r.type
  ),
  by_owner as (
    select r.owner_id, count(*) as count,
           round(percentile_cont(0.5) within group (order by r.hours)::numeric, 2) as median_hours,
           round(percentile_cont(0.9) within group (order by r.hours)::numeric, 2) as p90_hours
    from resolved r group by r.owner_id
  ),
  open_by_age as (
    select case when o.age < interval '1 day' then '<1d'
                when o.age < interval '3 days' then '1-3d'
                when o.age < interval '7 days' then '3-7d'
                when o.age < interval '30 days' then '7-30d'
                else '>30d' end as bucket,
           count(*) as count
    from (select now() - a.created_at as age
          from public.max_alerts a
          where a.tenant_id = p_tenant and a.resolved_at is null) o
    group by 1
  )
  select jsonb_build_object(
    'from', p_from, 'to', p_to, 'tz', p_tz,
    'per_day', (select jsonb_agg(jsonb_build_object(
                         'day', d.day::date, 'created', coalesce(c.created, 0),
                         'resolved', coalesce(c.resolved, 0), 'escalated', coalesce(c.escalated, 0))
                       order by d.day)
                from generate_series(p_from::timestamp, p_to::timestamp, interval '1 day') d(day)
                left join per_day c on c.day = d.day::date),
    'resolved_within_24h', (select jsonb_build_object(
                              'resolved', count(*),
                              'within_24h', count(*) filter (where r.hours <= 24),
                              'share', round((count(*) filter (where r.hours <= 24))::numeric / nullif(count(*), 0), 4))
                            from resolved r),
    'time_to_resolve', jsonb_build_object(
      'by_type', coalesce((select jsonb_agg(to_jsonb(t) order by t.type) from by_type t), '[]'),
      'by_owner', coalesce((select jsonb_agg(to_jsonb(o) order by o.owner_id nulls last) from by_owner o), '[]')),
    'open_by_age', (select jsonb_agg(jsonb_build_object('bucket', b.bucket, 'count', coalesce(o.count, 0)) order by b.n)
                    from unnest(array['<1d', '1-3d', '3-7d', '7-30d', '>30d']) with ordinality b(bucket, n)
                    left join open_by_age o on o.bucket = b.bucket))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.alert_analytics_live(text, date, date, text) to authenticated, service_role;

/**
 * As alert_analytics_live (above), from the summaries of the closed days plus the open part computed live: the
 * same figures. Percentiles: the ranks' bins are found from the summed cumulative counts, and only
 * the times in those bins are read and ordered; the interpolation is percentile_cont's.
 */
create or replace function public.alert_analytics(p_tenant text, p_from date, p_to date, p_tz text default 'UTC')
returns jsonb
language plpgsql volatile
set search_path = ''
set work_mem = '32MB'  -- the percentiles' bins in memory (~15 MB at 1M events a month)
as $$
declare
  v_end   timestamptz;
  v_cut   timestamptz;
  v_scope text;
  v_result jsonb;
begin
  begin
    perform p_from::timestamp at time zone p_tz;  -- a time zone PostgreSQL does not know raises here
    v_end := (p_to + 1)::timestamp at time zone p_tz;
  exception when invalid_parameter_value then
    perform public.raise_error('LW422', 'unknown time zone', 'tz');
  end;
  if p_to < p_from or p_to - p_from >= 366 then
    perform public.raise_error('LW422', 'the range must end on or after its start and span at most 366 days', 'to');
  end if;

  -- Whose figures: the whole tenant ('*'), an agent's own leads (their id), or nothing (null).
  v_scope := case
    when (select public.sees_all_tenants()) then '*'
    when p_tenant = (select public.current_tenant()) and (select public.sees_whole_tenant()) then '*'
    when p_tenant = (select public.current_tenant()) and (select public.current_app_role()) = 'agent'
      then (select auth.jwt()) ->> 'sub'
  end;
  v_cut := public.summarise_alert_days(p_tenant, p_from, p_to, p_tz);

  with pieces as materialized (
    select r.day, r.owner_key, r.type_key, r.created, r.escalated, r.resolved, r.resolutions, r.within_24h,
           r.cum, r.hours
    from public.alert_day_rollups r
    where r.tenant_id = p_tenant and r.tz = p_tz and r.day between p_from and p_to
      and (r.owner_key = v_scope or (v_scope = '*' and r.type_key = '*'))
    union all
    select s.day, s.owner_key, s.type_key, s.created, s.escalated, s.resolved, s.resolutions, s.within_24h,
           s.cum, s.hours
    from public.alert_rollup_rows(p_tenant, p_tz, v_cut, v_end) s
    where s.owner_key = v_scope or (v_scope = '*' and s.type_key = '*')
  ),
  totals as (  -- the caller's whole scope, per day
    select p.* from pieces p where p.owner_key = v_scope and p.type_key = '*'
  ),
  -- The groups whose percentiles are asked: per type (in the scope) and per owner, numbered.
  parts as (
    select dense_rank() over (order by g.kind, g.key)::integer as gid, g.*
    from (select 't' collate "C" as kind, p.type_key collate "C" as key, p.cum, p.hours
          from pieces p where p.owner_key = v_scope and p.type_key <> '*'
          union all
          select 'o', p.owner_key collate "C", p.cum, p.hours
          from pieces p where p.type_key = '*' and (p.owner_key <> '*' or v_scope <> '*')) g
  ),
  bins as (  -- per group and bin: how many times up to the bin's upper edge, and up to its lower one
    select g.gid, g.b, g.upto, coalesce(lag(g.upto) over (partition by g.gid order by g.b), 0) as below
    from (select p.gid, u.b::integer as b, sum(u.c)::bigint as upto
          from parts p cross join lateral unnest(p.cum) with ordinality u(c, b)
          group by p.gid, u.b) g
  ),
  groups as (
    select p.gid, min(p.kind) as kind, min(p.key) as key, max(b.n) as n
    from parts p join (select b.gid, max(b.upto) as n from bins b group by b.gid) b on b.gid = p.gid
    group by p.gid having max(b.n) > 0
  ),
  ranks as (  -- percentile_cont's two rows (1-based) around position p * (n - 1)
    select g.gid, g.kind, g.key, g.n, q.p, q.p * (g.n - 1) as pos,
           floor(q.p * (g.n - 1))::bigint + 1 as r_lo, ceil(q.p * (g.n - 1))::bigint + 1 as r_hi
    from groups g cross join (values (0.5::float8), (0.9::float8)) q(p)
  ),
  wanted as (
    select distinct r.gid, w.r, b.b, b.below
    from ranks r
    cross join lateral unnest(array[r.r_lo, r.r_hi]) w(r)
    join bins b on b.gid = r.gid and b.below < w.r and w.r <= b.upto
  ),
  picked as (  -- the value of each rank: read and ordered among the times of its bin only
    select w.gid, w.r,
           (select v.v
            from parts p cross join lateral unnest(p.hours[coalesce(p.cum[w.b - 1], 0) + 1 : p.cum[w.b]]) v(v)
            where p.gid = w.gid
            order by v.v offset w.r - w.below - 1 limit 1) as v
    from wanted w
  ),
  stats as (
    select r.kind, r.key, r.n,
           round((lo.v + (r.pos - floor(r.pos)) * (hi.v - lo.v))::numeric, 2) as value, r.p
    from ranks r
    join picked lo on lo.gid = r.gid and lo.r = r.r_lo
    join picked hi on hi.gid = r.gid and hi.r = r.r_hi
  ),
  figures as (
    select s.kind, s.key, s.n as count,
           max(s.value) filter (where s.p = 0.5) as median_hours,
           max(s.value) filter (where s.p = 0.9) as p90_hours
    from stats s group by s.kind, s.key, s.n
  ),
  per_day as (
    select t.day, sum(t.created) as created, sum(t.resolved) as resolved, sum(t.escalated) as escalated
    from totals t group by t.day
  ),
  open_by_age as (
    select case when o.age < interval '1 day' then '<1d'
                when o.age < interval '3 days' then '1-3d'
                when o.age < interval '7 days' then '3-7d'
                when o.age < interval '30 days' then '7-30d'
                else '>30d' end as bucket,
           count(*) as count
    from (select now() - a.created_at as age
          from public.max_alerts a
          where a.tenant_id = p_tenant and a.resolved_at is null) o
    group by 1
  )
  select jsonb_build_object(
    'from', p_from, 'to', p_to, 'tz', p_tz,
    'per_day', (select jsonb_agg(jsonb_build_object(
                         'day', d.day::date, 'created', coalesce(c.created, 0),
                         'resolved', coalesce(c.resolved, 0), 'escalated', coalesce(c.escalated, 0))
                       order by d.day)
                from generate_series(p_from::timestamp, p_to::timestamp, interval '1 day') d(day)
                left join per_day c on c.day = d.day::date),
    'resolved_within_24h', (select jsonb_build_object(
                              'resolved', coalesce(sum(t.resolutions), 0),
                              'within_24h', coalesce(sum(t.within_24h), 0),
                              'share', round(sum(t.within_24h)::numeric / nullif(sum(t.resolutions), 0), 4))
                            from totals t),
    'time_to_resolve', jsonb_build_object(
      'by_type', coalesce((select jsonb_agg(jsonb_build_object('type', f.key, 'count', f.count,
                                                               'median_hours', f.median_hours,
                                                               'p90_hours', f.p90_hours)
                                     order by f.key collate "default")
                           from figures f where f.kind = 't'), '[]'),
      'by_owner', coalesce((select jsonb_agg(jsonb_build_object('owner_id', nullif(f.key, ''), 'count', f.count,
                                                                'median_hours', f.median_hours,
                                                                'p90_hours', f.p90_hours)
                                             order by nullif(f.key, '') collate "default" nulls last)
                            from figures f where f.kind = 'o'), '[]')),
    'open_by_age', (select jsonb_agg(jsonb_build_object('bucket', b.bucket, 'count', coalesce(o.count, 0)) order by b.n)
                    from unnest(array['<1d', '1-3d', '3-7d', '7-30d', '>30d']) with ordinality b(bucket, n)
                    left join open_by_age o on o.bucket = b.bucket))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.alert_analytics(text, date, date, text) to authenticated, service_role;

/**
 * One page of a tenant's alerts, oldest first: the active ones (`p_state` 'active') or all of them
 * ('all'), with the list's filters (severity, type, lead) and a range on their creation time
 * [`p_from`, `p_to`). `p_cursor` is the `next_cursor` of the previous page (null after the last).
 * Runs as the caller: a user exports what row-level security shows them, as in the lists.
 */
create or replace function public.export_alerts(
  p_tenant   text,
  p_state    text default 'active',
  p_severity text default null,
  p_type     text default null,
  p_lead_id  text default null,
  p_from     timestamptz default null,
  p_to       timestamptz default null,
  p_limit    integer default 1000,
  p_cursor   jsonb default null
) returns jsonb
language plpgsql stable
set search_path = ''
set plan_cache_mode = force_custom_plan  -- plan each page with its real filters and cursor
as $$
declare
  v_result jsonb;
begin
  if p_state not in ('active', 'all') then
    perform public.raise_error('LW422', 'state must be active or all', 'state');
  end if;

  with page as (
    select a.*, l.name as lead_name, l.email as lead_email, l.owner_id,
           row_number() over (order by a.created_at, a.id) as n
    from (
      select a.*
      from public.max_alerts a
      where a.tenant_id = p_tenant
        and (p_state = 'all' or a.resolved_at is null)
        and (p_severity is null or a.severity = p_severity)
        and (p_type is null or a.type = p_type)
        and (p_lead_id is null or a.lead_id = p_lead_id)
        and (p_from is null or a.created_at >= p_from)
        and (p_to is null or a.created_at < p_to)
        and (p_cursor is null
             or (a.created_at, a.id) > ((p_cursor ->> 'c')::timestamptz, (p_cursor ->> 'i')::uuid))
      order by a.created_at, a.id
      limit p_limit + 1
    ) a
    left join public.leads l on l.tenant_id = a.tenant_id and l.lead_id = a.lead_id
  )
  select jsonb_build_object(
    'rows', coalesce((select jsonb_agg(jsonb_build_object(
                        'id', p.id, 'lead_id', p.lead_id, 'lead_name', p.lead_name, 'lead_email', p.lead_email,
                        'owner_id', p.owner_id, 'type', p.type, 'severity', p.severity, 'message', p.message,
                        'action', p.suggested_action ->> 'action', 'created_at', p.created_at,
                        'escalated_at', p.escalated_at, 'resolved_at', p.resolved_at,
                        'resolved_by', p.resolved_by, 'resolution', p.resolution) order by p.n)
                      from page p where p.n <= p_limit), '[]'),
    'next_cursor', (select jsonb_build_object('c', p.created_at, 'i', p.id)
                    from page p where p.n = p_limit and exists (select from page q where q.n > p_limit)))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.export_alerts(text, text, text, text, text, timestamptz, timestamptz, integer, jsonb) to authenticated, service_role;

/**
 * One page of a tenant's activities (or one lead's), in the order they happened, within
 * [`p_from`, `p_to`) on `occurred_at`. Runs as the caller, as the timeline does.
 */
create or replace function public.export_activities(
  p_tenant  text,
  p_lead_id text default null,
  p_from    timestamptz default null,
  p_to      timestamptz default null,
  p_limit   integer default 1000,
  p_cursor  jsonb default null
) returns jsonb
language plpgsql stable
set search_path = ''
set plan_cache_mode = force_custom_plan
as $$
declare
  v_result jsonb;
begin
  with page as (
    select a, row_number() over (order by a.occurred_at, a.id) as n
    from public.lead_activities a
    where a.tenant_id = p_tenant
      and (p_lead_id is null or a.lead_id = p_lead_id)
      and (p_from is null or a.occurred_at >= p_from)
      and (p_to is null or a.occurred_at < p_to)
      and (p_cursor is null
           or (a.occurred_at, a.id) > ((p_cursor ->> 'o')::timestamptz, (p_cursor ->> 'i')::uuid))
    order by a.occurred_at, a.id
    limit p_limit + 1
  )
  select jsonb_build_object(
    'rows', coalesce((select jsonb_agg(public.activity_json(p.a) order by p.n) from page p where p.n <= p_limit), '[]'),
    'next_cursor', (select jsonb_build_object('o', (p.a).occurred_at, 'i', (p.a).id)
                    from page p where p.n = p_limit and exists (select from page q where q.n > p_limit)))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.export_activities(text, text, timestamptz, timestamptz, integer, jsonb) to authenticated, service_role;

/** The bin edges of resolution times, in hours: (b/3)^2 for b = 1..47 (up to ~245 h), then infinity. */
create or replace function public.alert_rollup_edges() returns float8[]
language sql immutable parallel safe
set search_path = ''
as $$
  select array_append(array(select (b / 3.0)::float8 ^ 2 from generate_series(1, 47) b), 'Infinity'::float8)
$$;
grant execute on function public.alert_rollup_edges() to authenticated, service_role;

/**
 * The summary rows of the alert history between `p_start` and `p_end`, by local day in `p_tz`,
 * owner and type (grouping sets: per owner and type, per owner, per type, per day). Reads as the
 * caller: row-level security applies (the live part of an agent's figures is their own).
 */
create or replace function public.alert_rollup_rows(p_tenant text, p_tz text, p_start timestamptz, p_end timestamptz)
returns table (day date, owner_key text, type_key text, created integer, escalated integer, resolved integer,
               resolutions integer, within_24h integer, cum integer[], hours float8[])
language sql stable
set search_path = ''
as $$
  with history as (  -- the range's events and resolutions, each with its lead
    select e.at, e.lead_id, e.type, e.event, null::float8 as hours
    from public.alert_events e
    where e.tenant_id = p_tenant and e.at >= p_start and e.at < p_end
      and e.event in ('created', 'escalated', 'resolved')
    union all
    select a.resolved_at, a.lead_id, a.type, null, (extract(epoch from a.resolved_at - a.created_at) / 3600)::float8
    from public.max_alerts a
    where a.tenant_id = p_tenant and a.resolved_at >= p_start and a.resolved_at < p_end
  ),
  facts as (  -- by local day, the lead's owner ('' for none) and type
    select (h.at at time zone p_tz)::date as day, coalesce(l.owner_id, '') collate "C" as owner_key,
           h.type::text collate "C" as type_key, h.event, h.hours
    from history h
    left join public.leads l on l.tenant_id = p_tenant and l.lead_id = h.lead_id
  ),
  grouped as (
    select f.day,
           case when grouping(f.owner_key) = 1 then '*' else f.owner_key end as owner_key,
           case when grouping(f.type_key) = 1 then '*' else f.type_key end as type_key,
           (count(*) filter (where f.event = 'created'))::integer as created,
           (count(*) filter (where f.event = 'escalated'))::integer as escalated,
           (count(*) filter (where f.event = 'resolved'))::integer as resolved,
           (count(f.hours))::integer as resolutions,
           (count(*) filter (where f.hours <= 24))::integer as within_24h,
           coalesce(array_agg(f.hours order by f.hours) filter (where f.hours is not null), '{}') as hours
    from facts f
    group by grouping sets ((f.day, f.owner_key, f.type_key), (f.day, f.owner_key), (f.day, f.type_key), (f.day))
  )
  select g.day, g.owner_key, g.type_key, g.created, g.escalated, g.resolved, g.resolutions, g.within_24h,
         array(select width_bucket(edge, g.hours) from unnest(public.alert_rollup_edges()) with ordinality x(edge, b)
               order by x.b),
         g.hours
  from grouped g
$$;
grant execute on function public.alert_rollup_rows(text, text, timestamptz, timestamptz) to authenticated, service_role;

/**
 * Drop the summaries a rewrite of history made wrong: those of the days (in every time zone
 * summarised) holding one of these moments. Owner-run maintenance and triggers only.
 */
create or replace function public.forget_alert_rollups(p_tenant text, p_moments timestamptz[]) returns void
language sql
security definer
set search_path = ''
as $$
  delete from public.alert_day_rollups r
  using (select distinct z.tz, (m at time zone z.tz)::date as day
         from (select distinct r2.tz from public.alert_day_rollups r2 where r2.tenant_id = p_tenant) z
         cross join unnest(p_moments) m) d
  where r.tenant_id = p_tenant and r.tz = d.tz and r.day = d.day
$$;

/**
 * Summarise the days `p_from`..`p_to` in `p_tz` up to 5 minutes ago (what was written before has
 * committed): the closed days whole, once; the open day (today) so far, folding in what happened
 * since its last fold when that is more than 10 minutes old. First drops the summaries an alert
 * reopened since the last check made wrong. Runs as the owner (it sees every lead, so the
 * summaries serve every caller); a user may only summarise their own tenant. Answers the moment up
 * to which the range is summarised: the caller computes the rest live.
 */
create or replace function public.summarise_alert_days(p_tenant text, p_from date, p_to date, p_tz text default 'UTC')
returns timestamptz
language plpgsql
security definer  -- writes summaries, which no caller writes directly
set search_path = ''
as $$
declare
  v_fold_day date;
  v_cover timestamptz := now() - interval '5 minutes';
  v_open  date := (v_cover at time zone p_tz)::date;
  v_start timestamptz := p_from::timestamp at time zone p_tz;
  v_end   timestamptz := (p_to + 1)::timestamp at time zone p_tz;
  v_mark  timestamptz;
  v_days  date[];
  v_moments timestamptz[];
  v_until timestamptz;
begin
  if not public.sees_all_tenants() and p_tenant is distinct from public.current_tenant() then
    return v_start;  -- someone else's tenant: row-level security shows them nothing anyway
  end if;

  -- Alerts reopened since the last check: the day of their earlier resolution changes.
  select m.reopens_seen into v_mark from public.alert_rollup_marks m where m.tenant_id = p_tenant;
  if v_mark is not null then
    select array_agg(distinct r.at) into v_moments
    from public.alert_events o
    join public.alert_events r on r.tenant_id = o.tenant_id and r.lead_id = o.lead_id and r.alert_id = o.alert_id
                              and r.event = 'resolved' and r.at < o.at
    where o.tenant_id = p_tenant and o.at >= v_mark - interval '1 hour' and o.event = 'reopened';
    if v_moments is not null then
      perform public.forget_alert_rollups(p_tenant, v_moments);
    end if;
  end if;
  if v_mark is null or v_mark < now() - interval '5 minutes' then
    insert into public.alert_rollup_marks as m (tenant_id, reopens_seen) values (p_tenant, now())
    on conflict (tenant_id) do update set reopens_seen = excluded.reopens_seen;
  end if;

  for v_pass in 1..2 loop  -- look without the lock; when there is work, take it and look again
    -- Days never summarised.
    select array_agg(d.day::date order by d.day) into v_days
    from generate_series(p_from::timestamp, least(p_to, v_open)::timestamp, interval '1 day') d(day)
    where not exists (select from public.alert_day_rollups r
                      where r.tenant_id = p_tenant and r.tz = p_tz and r.day = d.day::date
                        and r.owner_key = '*' and r.type_key = '*');
    -- Days summarised in part: the open day's last fold is over 10 minutes old, or that day has closed.
    select r.day, r.until into v_fold_day, v_until
    from public.alert_day_rollups r
    where r.tenant_id = p_tenant and r.tz = p_tz and r.day between p_from and least(p_to, v_open)
      and r.owner_key = '*' and r.type_key = '*' and r.until is not null
      and (r.day < v_open or r.until < v_cover - interval '10 minutes')
    order by r.day limit 1;
    exit when v_days is null and v_fold_day is null;
    if v_pass = 1 then
      perform pg_advisory_xact_lock(hashtextextended('alert_day_rollups' || p_tenant || E'\n' || p_tz, 0));
    end if;
  end loop;

  if v_days is not null then
    with s as materialized (
      select * from public.alert_rollup_rows(p_tenant, p_tz, v_days[1]::timestamp at time zone p_tz,
                                             least(v_cover, (v_days[cardinality(v_days)] + 1)::timestamp at time zone p_tz)) s
      where s.day = any (v_days)
    )
    insert into public.alert_day_rollups as r (tenant_id, tz, day, owner_key, type_key, created, escalated, resolved,
                                               resolutions, within_24h, cum, hours, until)
    select p_tenant, p_tz, s.day, s.owner_key, s.type_key, s.created, s.escalated, s.resolved,
           s.resolutions, s.within_24h, s.cum, s.hours, case when s.day >= v_open then v_cover end
    from s
    union all  -- quiet days: the marker row, with zeros
    select p_tenant, p_tz, d, '*', '*', 0, 0, 0, 0, 0, array_fill(0, array[cardinality(public.alert_rollup_edges())]),
           '{}', case when d >= v_open then v_cover end
    from unnest(v_days) d
    where not exists (select from s where s.day = d);
  end if;

  while v_fold_day is not null loop
    -- Fold what happened since `v_until` into the day's rows, up to its end or 5 minutes ago.
    insert into public.alert_day_rollups as r (tenant_id, tz, day, owner_key, type_key, created, escalated, resolved,
                                               resolutions, within_24h, cum, hours)
    select p_tenant, p_tz, s.day, s.owner_key, s.type_key, s.created, s.escalated, s.resolved,
           s.resolutions, s.within_24h, s.cum, s.hours
    from public.alert_rollup_rows(p_tenant, p_tz, v_until,
                                  least(v_cover, (v_fold_day + 1)::timestamp at time zone p_tz)) s
    where s.day = v_fold_day
    on conflict (tenant_id, tz, day, owner_key, type_key) do update
    set created = r.created + excluded.created, escalated = r.escalated + excluded.escalated,
        resolved = r.resolved + excluded.resolved, resolutions = r.resolutions + excluded.resolutions,
        within_24h = r.within_24h + excluded.within_24h,
        cum = (select array_agg(a + b order by i) from unnest(r.cum, excluded.cum) with ordinality u(a, b, i)),
        hours = (select coalesce(array_agg(h order by h), '{}') from unnest(r.hours || excluded.hours) h),
        built_at = now();
    update public.alert_day_rollups r
    set until = case when v_fold_day < v_open then null else v_cover end
    where r.tenant_id = p_tenant and r.tz = p_tz and r.day = v_fold_day and r.owner_key = '*' and r.type_key = '*';
    select r.day, r.until into v_fold_day, v_until
    from public.alert_day_rollups r
    where r.tenant_id = p_tenant and r.tz = p_tz and r.day between p_from and least(p_to, v_open)
      and r.owner_key = '*' and r.type_key = '*' and r.until is not null
      and (r.day < v_open or r.until < v_cover - interval '10 minutes')
    order by r.day limit 1;
  end loop;

  -- Summarised: every day before today's; today up to its last fold.
  return greatest(v_start, least(v_end, coalesce(
    (select r.until from public.alert_day_rollups r
     where r.tenant_id = p_tenant and r.tz = p_tz and r.day = v_open and p_to >= v_open and p_from <= v_open
       and r.owner_key = '*' and r.type_key = '*'),
    least(p_to + 1, greatest(p_from, v_open))::timestamp at time zone p_tz)));
end
$$;
grant execute on function public.summarise_alert_days(text, date, date, text) to authenticated, service_role;

/**
 * The nightly summary: for every tenant and time zone already summarised, the days closed since.
 * Called by the scheduled retention job (lazily done on read otherwise). Service only.
 */
create or replace function public.summarise_recent_alert_days(p_tenant text default null) returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_pair record;
  v_count integer := 0;
begin
  if not public.is_trusted_caller() then
    perform public.raise_error('LW403', 'summaries are made by the service');
  end if;
  for v_pair in
    select r.tenant_id, r.tz, max(r.day) as last_day
    from public.alert_day_rollups r
    where (p_tenant is null or r.tenant_id = p_tenant) and r.owner_key = '*' and r.type_key = '*'
    group by r.tenant_id, r.tz
  loop
    perform public.summarise_alert_days(v_pair.tenant_id, v_pair.last_day,
                                        ((now() - interval '5 minutes') at time zone v_pair.tz)::date, v_pair.tz);
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;
grant execute on function public.summarise_recent_alert_days(text) to service_role;

-- =================================================================================================
-- supabase/schemas/80_webhooks.sql
-- =================================================================================================

-- Outgoing webhooks: endpoints, and the deliveries each alert event calls for (an outbox sent by a
-- scheduled deliverer, signed with Standard Webhooks, retried on a schedule).

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Tables ------------------------------------------------------------------------------------------

create table public.webhook_endpoints (
  id              uuid not null default public.uuid_v7(),
  tenant_id       text not null,
  url             text not null,
  events          text[] not null,                 -- the event types it receives ('alert.created', ...)
  enabled         boolean not null default true,
  secret          text not null,                   -- 'whsec_' + base64: signs every delivery; never shown to users again
  disabled_reason text,                            -- why the deliverer disabled it (a receiver answering 410 Gone)
  created_by      text not null,
  created_at      timestamptz not null default now(),
  constraint webhook_endpoints_pkey primary key (tenant_id, id),  -- tenant first: every key leads with it
  constraint webhook_endpoints_url_is_http check (url ~ '^https?://[^\s]+$' and length(url) <= 2000),
  constraint webhook_endpoints_secret_is_whsec check (secret ~ '^whsec_[A-Za-z0-9+/=]{24,}$'),
  constraint webhook_endpoints_events_known check (
    cardinality(events) >= 1
    and events <@ array['alert.created', 'alert.escalated', 'alert.overdue', 'alert.snoozed',
                        'alert.reopened', 'alert.resolved', 'digest.daily'])
);

create table public.webhook_deliveries (
  id              uuid not null default public.uuid_v7(),  -- the `webhook-id`: the same on every attempt
  tenant_id       text not null,
  endpoint_id     uuid not null,
  event_id        bigint,                          -- the alert_events row it tells (one delivery per event and endpoint)
  event_type      text not null,
  payload         jsonb not null,                  -- the body, as sent on every attempt
  status          text not null default 'pending', -- pending, sending (claimed, under lease), delivered, failed
  attempts        integer not null default 0,      -- attempts started; also the claim's token
  next_attempt_at timestamptz not null default now(),  -- due from then; while sending, when the lease ends
  last_attempt_at timestamptz,
  last_status     integer,                         -- the receiver's last HTTP status (null: no answer)
  last_error      text,                            -- 'timeout', 'refused', ... when no answer came
  delivered_at    timestamptz,
  attempt_log     jsonb not null default '[]',     -- [{attempt, at, status, error}]
  created_at      timestamptz not null default now(),
  constraint webhook_deliveries_pkey primary key (tenant_id, id),
  constraint webhook_deliveries_endpoint_fkey foreign key (tenant_id, endpoint_id)
    references public.webhook_endpoints (tenant_id, id) on delete cascade,
  constraint webhook_deliveries_once_per_event unique (tenant_id, event_id, endpoint_id),
  constraint webhook_deliveries_status_known check (status in ('pending', 'sending', 'delivered', 'failed'))
);

-- The enabled endpoints of a tenant: what the outbox trigger joins each event to.
create index webhook_endpoints_tenant on public.webhook_endpoints (tenant_id) where enabled;

-- What the deliverer claims: due deliveries, oldest first.
create index webhook_deliveries_due on public.webhook_deliveries (next_attempt_at)
  where status in ('pending', 'sending');

-- An endpoint's delivery log, newest first.
create index webhook_deliveries_endpoint on public.webhook_deliveries (endpoint_id, created_at desc);

-- What pruning reads: the oldest delivered deliveries and sent pushes.
create index webhook_deliveries_delivered on public.webhook_deliveries (delivered_at) where status = 'delivered';

-- Grants and row-level security -------------------------------------------------------------------

grant select, insert, update, delete on table public.webhook_endpoints to service_role;
grant select on table public.webhook_deliveries to authenticated;
grant select, insert, update, delete on table public.webhook_deliveries to service_role;
grant select (id) on table public.webhook_endpoints to authenticated;
grant select (tenant_id) on table public.webhook_endpoints to authenticated;
grant select (url) on table public.webhook_endpoints to authenticated;
grant select (events) on table public.webhook_endpoints to authenticated;
grant select (enabled) on table public.webhook_endpoints to authenticated;
grant select (disabled_reason) on table public.webhook_endpoints to authenticated;
grant select (created_by) on table public.webhook_endpoints to authenticated;
grant select (created_at) on table public.webhook_endpoints to authenticated;

alter table public.webhook_endpoints enable row level security;
alter table public.webhook_deliveries enable row level security;

-- Triggers ----------------------------------------------------------------------------------------

/**
 * The outbox: for every alert event recorded, one delivery per enabled endpoint of its tenant that
 * asked for its type, with the alert as the list shows it (lead name, owner) and the event's actor
 * and time — set-based, in the transaction that records the event. Security definer: it reads the
 * endpoints and writes deliveries, which the callers recording events cannot.
 */
create or replace function public.enqueue_webhook_deliveries()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  if not exists (select from public.webhook_endpoints w where w.enabled) then
    return null;  -- the common case without any endpoint: no join over the new events
  end if;
  insert into public.webhook_deliveries (tenant_id, endpoint_id, event_id, event_type, payload, next_attempt_at)
  select e.tenant_id, w.id, e.id, 'alert.' || e.event,
         jsonb_build_object(
           'type', 'alert.' || e.event,
           'timestamp', e.at,
           'data', jsonb_build_object(
             'event', jsonb_build_object('id', e.id, 'event', e.event, 'severity', e.severity,
                                         'actor', e.actor, 'at', e.at),
             'alert', public.alert_json(a, l.name, l.email) || jsonb_build_object('owner_id', l.owner_id))),
         e.at
  from new_events e
  join public.webhook_endpoints w
    on w.tenant_id = e.tenant_id and w.enabled and ('alert.' || e.event) = any (w.events)
  join public.max_alerts a on a.tenant_id = e.tenant_id and a.id = e.alert_id
  left join public.leads l on l.tenant_id = a.tenant_id and l.lead_id = a.lead_id;
  return null;
end
$function$
;

create trigger alert_events_enqueue_webhooks after insert on public.alert_events
  referencing new table as new_events
  for each statement execute function public.enqueue_webhook_deliveries();

-- Policies ----------------------------------------------------------------------------------------

/** Is the caller an admin of this tenant (or platform staff, or the service)? */
create or replace function public.administers_tenant(p_tenant text) returns boolean
language sql stable
as $$
  select (select public.sees_all_tenants())
      or (p_tenant = (select public.current_tenant()) and (select public.current_app_role()) = 'admin')
$$;
grant execute on function public.administers_tenant(text) to authenticated, service_role;

create policy "Webhook endpoints are visible to the admins of their tenant" on public.webhook_endpoints
  for select to authenticated using (public.administers_tenant(tenant_id));

create policy "Webhook deliveries are visible to the admins of their tenant" on public.webhook_deliveries
  for select to authenticated using (public.administers_tenant(tenant_id));

-- Functions ---------------------------------------------------------------------------------------

/** An endpoint as the API shows it: never its secret. */
create or replace function public.webhook_json(p_id uuid, p_url text, p_events text[], p_enabled boolean,
                                    p_disabled_reason text, p_created_at timestamptz)
returns jsonb
language sql immutable
as $$
  select jsonb_build_object('id', p_id, 'url', p_url, 'events', to_jsonb(p_events), 'enabled', p_enabled,
                            'disabled_reason', p_disabled_reason, 'created_at', p_created_at)
$$;
grant execute on function public.webhook_json(uuid, text, text[], boolean, text, timestamptz) to authenticated, service_role;

/** A delivery as the log shows it: next_attempt_at only while a retry is ahead. */
create or replace function public.webhook_delivery_json(p_delivery public.webhook_deliveries) returns jsonb
language sql immutable
as $$
  select jsonb_build_object(
    'id', p_delivery.id, 'event_type', p_delivery.event_type, 'status', p_delivery.status,
    'attempts', p_delivery.attempts, 'last_status', p_delivery.last_status, 'last_error', p_delivery.last_error,
    'last_attempt_at', p_delivery.last_attempt_at, 'delivered_at', p_delivery.delivered_at,
    'next_attempt_at', case when p_delivery.status in ('pending', 'sending') then p_delivery.next_attempt_at end,
    'created_at', p_delivery.created_at, 'attempt_log', p_delivery.attempt_log, 'payload', p_delivery.payload)
$$;
grant execute on function public.webhook_delivery_json(public.webhook_deliveries) to authenticated, service_role;

/**
 * Register an endpoint (admins). `p_secret` ('whsec_...', made by the caller's server) is answered
 * this once, with the endpoint.
 */
create or replace function public.create_webhook(p_tenant text, p_url text, p_events jsonb, p_secret text,
                                      p_enabled boolean default true, p_actor text default 'user_manual')
returns jsonb
language plpgsql
security definer  -- writes the endpoints, which users cannot write themselves
set search_path = ''
as $$
declare
  v_endpoint   public.webhook_endpoints;
  v_constraint text;
  v_actor    text := case when public.is_trusted_caller() then p_actor else (select auth.jwt()) ->> 'sub' end;
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  if jsonb_typeof(p_events) is distinct from 'array' then
    perform public.raise_error('LW422', 'events must be a list of event types', 'events');
  end if;
  insert into public.webhook_endpoints (tenant_id, url, events, enabled, secret, created_by)
  values (p_tenant, p_url, array(select jsonb_array_elements_text(p_events)), p_enabled, p_secret, v_actor)
  returning * into v_endpoint;
  return jsonb_build_object('webhook',
    public.webhook_json(v_endpoint.id, v_endpoint.url, v_endpoint.events, v_endpoint.enabled,
                        v_endpoint.disabled_reason, v_endpoint.created_at)
    || jsonb_build_object('secret', v_endpoint.secret));
exception
  when check_violation then
    get stacked diagnostics v_constraint = constraint_name;
    -- raise_error's error, raised here so that the block visibly ends
    raise exception using errcode = 'LW422', message = 'the webhook has an invalid ' || split_part(v_constraint, '_', 3),
                          detail = coalesce(split_part(v_constraint, '_', 3), '');
end
$$;
grant execute on function public.create_webhook(text, text, jsonb, text, boolean, text) to authenticated, service_role;

/** A tenant's endpoints (admins), oldest first, without their secrets. */
create or replace function public.list_webhooks(p_tenant text) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  return jsonb_build_object('webhooks', coalesce(
    (select jsonb_agg(public.webhook_json(w.id, w.url, w.events, w.enabled, w.disabled_reason, w.created_at)
                      order by w.created_at, w.id)
     from public.webhook_endpoints w where w.tenant_id = p_tenant), '[]'));
end
$$;
grant execute on function public.list_webhooks(text) to authenticated, service_role;

/** Remove an endpoint and its delivery log (admins). */
create or replace function public.delete_webhook(p_tenant text, p_webhook_id uuid) returns jsonb
language plpgsql
security definer  -- deletes endpoints, which users cannot write themselves
set search_path = ''
as $$
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  delete from public.webhook_endpoints w where w.id = p_webhook_id and w.tenant_id = p_tenant;
  if not found then
    perform public.raise_error('LW404', 'webhook not found', 'id');
  end if;
  return jsonb_build_object('deleted', p_webhook_id);
end
$$;
grant execute on function public.delete_webhook(text, uuid) to authenticated, service_role;

/** Replace an endpoint's signing secret (admins): the new one is answered this once. */
create or replace function public.rotate_webhook_secret(p_tenant text, p_webhook_id uuid, p_secret text) returns jsonb
language plpgsql
security definer  -- writes the endpoints, which users cannot write themselves
set search_path = ''
as $$
declare
  v_endpoint public.webhook_endpoints;
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  update public.webhook_endpoints w set secret = p_secret
  where w.id = p_webhook_id and w.tenant_id = p_tenant
  returning * into v_endpoint;
  if not found then
    perform public.raise_error('LW404', 'webhook not found', 'id');
  end if;
  return jsonb_build_object('webhook',
    public.webhook_json(v_endpoint.id, v_endpoint.url, v_endpoint.events, v_endpoint.enabled,
                        v_endpoint.disabled_reason, v_endpoint.created_at)
    || jsonb_build_object('secret', v_endpoint.secret));
end
$$;
grant execute on function public.rotate_webhook_secret(text, uuid, text) to authenticated, service_role;

/** An endpoint's deliveries, newest first (admins): attempts, statuses, errors, next retry. */
create or replace function public.list_webhook_deliveries(p_tenant text, p_webhook_id uuid, p_limit integer default 50)
returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  if not exists (select from public.webhook_endpoints w where w.id = p_webhook_id and w.tenant_id = p_tenant) then
    perform public.raise_error('LW404', 'webhook not found', 'id');
  end if;
  return jsonb_build_object('deliveries', coalesce(
    (select jsonb_agg(public.webhook_delivery_json(d) order by d.created_at desc, d.id desc)
     from (select * from public.webhook_deliveries d
           where d.endpoint_id = p_webhook_id
           order by d.created_at desc, d.id desc
           limit least(greatest(p_limit, 1), 200)) d), '[]'));
end
$$;
grant execute on function public.list_webhook_deliveries(text, uuid, integer) to authenticated, service_role;

/**
 * Send a delivery again (admins): due now, whatever became of it, with the same `webhook-id`; one
 * attempt more even after it failed. A delivery being sent right now is a conflict.
 */
create or replace function public.redeliver_webhook(p_tenant text, p_webhook_id uuid, p_delivery_id uuid)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  v_delivery public.webhook_deliveries;
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  select * into v_delivery from public.webhook_deliveries d
  where d.id = p_delivery_id and d.endpoint_id = p_webhook_id and d.tenant_id = p_tenant
  for update;
  if not found then
    perform public.raise_error('LW404', 'delivery not found', 'deliveryId');
  end if;
  if v_delivery.status = 'sending' and v_delivery.next_attempt_at > now() then
    perform public.raise_error('LW409', 'the delivery is being sent', 'deliveryId');
  end if;
  update public.webhook_deliveries d set status = 'pending', next_attempt_at = now()
  where d.tenant_id = p_tenant and d.id = p_delivery_id
  returning * into v_delivery;
  return jsonb_build_object('delivery', public.webhook_delivery_json(v_delivery));
end
$function$
;
grant execute on function public.redeliver_webhook(text, uuid, uuid) to authenticated, service_role;

/**
 * The wait before attempt `p_attempt + 1` after attempt `p_attempt` failed (Standard Webhooks'
 * suggested schedule: about 27 hours in all), or null: no attempt after the eighth.
 */
create or replace function public.webhook_retry_delay(p_attempt integer) returns interval
language sql immutable
as $$
  select (array[interval '5 seconds', interval '5 minutes', interval '30 minutes', interval '2 hours',
                interval '5 hours', interval '10 hours', interval '10 hours'])[p_attempt]
$$;
grant execute on function public.webhook_retry_delay(integer) to service_role;

/** Claim due webhook deliveries (FOR UPDATE SKIP LOCKED) under a lease: [{tenant_id, id, attempt, url, secret, payload}]. */
create or replace function public.claim_webhook_deliveries(p_now timestamp with time zone DEFAULT now(), p_limit integer DEFAULT 100, p_lease_seconds integer DEFAULT 120)
 RETURNS jsonb
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
declare
  v_claimed jsonb;
begin
  with due as (
    select d.tenant_id, d.id
    from public.webhook_deliveries d
    where d.status in ('pending', 'sending') and d.next_attempt_at <= p_now
      and exists (select from public.webhook_endpoints w where w.tenant_id = d.tenant_id and w.id = d.endpoint_id and w.enabled)
    order by d.next_attempt_at
    limit p_limit
    for update of d skip locked
  ),
  claimed as (
    update public.webhook_deliveries d
    set status = 'sending', attempts = d.attempts + 1, next_attempt_at = p_now + make_interval(secs => p_lease_seconds), last_attempt_at = p_now
    from due
    where d.tenant_id = due.tenant_id and d.id = due.id
    returning d.tenant_id, d.id, d.endpoint_id, d.attempts, d.payload
  )
  select coalesce(jsonb_agg(jsonb_build_object('tenant_id', c.tenant_id, 'id', c.id, 'attempt', c.attempts, 'url', w.url,
                                               'secret', w.secret, 'payload', c.payload)), '[]')
  into v_claimed
  from claimed c
  join public.webhook_endpoints w on w.tenant_id = c.tenant_id and w.id = c.endpoint_id;
  return v_claimed;
end
$function$
;
grant execute on function public.claim_webhook_deliveries(timestamptz, integer, integer) to service_role;

/** Record claimed deliveries' outcomes [{tenant_id, id, attempt, status, error}]: delivered, retried later, or failed. */
create or replace function public.record_webhook_attempts(p_results jsonb, p_now timestamp with time zone DEFAULT now())
 RETURNS jsonb
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
declare
  v_result jsonb;
begin
  with outcome as (
    select r.tenant_id, r.id, r.attempt, r.status, left(r.error, 200) as error,
           case when r.status between 200 and 299 then 'delivered'
                when r.status = 410 or public.webhook_retry_delay(r.attempt) is null then 'failed'
                else 'pending' end as next_status
    from jsonb_to_recordset(p_results) as r (tenant_id text, id uuid, attempt integer, status integer, error text)
  ),
  recorded as (
    update public.webhook_deliveries d
    set status = o.next_status,
        next_attempt_at = case when o.next_status = 'pending'
                               then p_now + public.webhook_retry_delay(o.attempt) else d.next_attempt_at end,
        last_status = o.status,
        last_error = o.error,
        delivered_at = case when o.next_status = 'delivered' then p_now end,
        attempt_log = d.attempt_log
                      || jsonb_build_object('attempt', o.attempt, 'at', p_now, 'status', o.status, 'error', o.error)
    from outcome o
    where d.tenant_id = o.tenant_id and d.id = o.id and d.status = 'sending' and d.attempts = o.attempt
    returning d.tenant_id, d.endpoint_id, o.status, o.next_status
  ),
  disabled as (
    update public.webhook_endpoints w
    set enabled = false, disabled_reason = 'the receiver answered 410 Gone'
    where (w.tenant_id, w.id) in (select r.tenant_id, r.endpoint_id from recorded r where r.status = 410) and w.enabled
    returning 1
  )
  select jsonb_build_object(
    'delivered', count(*) filter (where r.next_status = 'delivered'),
    'retrying', count(*) filter (where r.next_status = 'pending'),
    'failed', count(*) filter (where r.next_status = 'failed'),
    'disabled', (select count(*) from disabled))
  into v_result
  from recorded r;
  return v_result;
end
$function$
;
grant execute on function public.record_webhook_attempts(jsonb, timestamptz) to service_role;

/** Enable (clearing why it was disabled) or disable one of the tenant's endpoints (admins). */
create or replace function public.set_webhook_enabled(p_tenant text, p_webhook_id uuid, p_enabled boolean) returns jsonb
language plpgsql
security definer  -- writes the endpoints, which users cannot write themselves
set search_path = ''
as $$
declare
  v_endpoint public.webhook_endpoints;
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  if p_enabled is null then
    perform public.raise_error('LW422', 'enabled must be true or false', 'enabled');
  end if;
  update public.webhook_endpoints w
  set enabled = p_enabled, disabled_reason = case when p_enabled then null else 'disabled by an admin' end
  where w.id = p_webhook_id and w.tenant_id = p_tenant
  returning * into v_endpoint;
  if not found then
    perform public.raise_error('LW404', 'webhook not found', 'id');
  end if;
  return jsonb_build_object('webhook',
    public.webhook_json(v_endpoint.id, v_endpoint.url, v_endpoint.events, v_endpoint.enabled,
                        v_endpoint.disabled_reason, v_endpoint.created_at));
end
$$;
grant execute on function public.set_webhook_enabled(text, uuid, boolean) to authenticated, service_role;

-- =================================================================================================
-- supabase/schemas/85_members.sql
-- =================================================================================================

-- Team members and what they are told: pushes on alert events (quiet hours respected) and the
-- daily digest.

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Tables ------------------------------------------------------------------------------------------

create table public.team_members (
  tenant_id     text not null,
  user_id       text not null,                        -- the JWT `sub`
  name          text not null,
  role          text not null,                        -- admin, manager or agent (what they are told about)
  phone         text,                                 -- WhatsApp number, E.164
  locale        text not null default 'fr',
  time_zone     text not null default 'Europe/Paris', -- an IANA zone: quiet hours and the digest follow it
  quiet_start   time,                                 -- no push from then ...
  quiet_end     time,                                 -- ... until then, local time (both null: none)
  notifications text[] not null default array['high_alert', 'overdue', 'digest'],
  whatsapp      boolean not null default false,       -- pushes also by WhatsApp to `phone`
  updated_at    timestamptz not null default now(),
  constraint team_members_pkey primary key (tenant_id, user_id),
  constraint team_members_role_known check (role in ('admin', 'manager', 'agent')),
  constraint team_members_phone_is_e164 check (phone ~ '^\+[1-9][0-9]{6,14}$'),
  constraint team_members_locale_known check (locale in ('fr', 'en')),
  constraint team_members_quiet_complete check ((quiet_start is null) = (quiet_end is null)),
  constraint team_members_notifications_known check (notifications <@ array['high_alert', 'overdue', 'digest']),
  constraint team_members_whatsapp_has_phone check (not whatsapp or phone is not null)
);

create table public.member_pushes (
  id              uuid not null default public.uuid_v7(),
  tenant_id       text not null,
  user_id         text not null,
  event_id        bigint,                          -- the alert_events row it tells (a digest has none)
  kind            text not null,                   -- high_alert (to the owner), overdue (to managers) or digest
  phone           text not null,                   -- the member's WhatsApp number when it was written
  text            text not null,                   -- the message, in the member's locale
  status          text not null default 'pending', -- pending, sending (under lease), sent, failed
  attempts        integer not null default 0,
  next_attempt_at timestamptz not null,            -- due from then (quiet hours pushed it to their end)
  last_error      text,
  sent_at         timestamptz,
  created_at      timestamptz not null default now(),
  constraint member_pushes_pkey primary key (tenant_id, id),  -- tenant first: every key leads with it
  constraint member_pushes_once_per_event unique (tenant_id, event_id, user_id),
  constraint member_pushes_kind_known check (kind in ('high_alert', 'overdue', 'digest')),
  constraint member_pushes_status_known check (status in ('pending', 'sending', 'sent', 'failed'))
);

create table public.digest_settings (
  tenant_id  text not null,
  hour       smallint not null,             -- the local hour the digest is written, 0-23
  time_zone  text not null,                 -- the IANA zone of that hour (and of the digest's day)
  updated_at timestamptz not null default now(),
  constraint digest_settings_pkey primary key (tenant_id),
  constraint digest_settings_hour_valid check (hour between 0 and 23)
);

create table public.member_digests (
  tenant_id  text not null,
  user_id    text not null,
  day        date not null,                 -- the tenant's local day it is for
  digest     jsonb,                         -- what was sent; null: nothing to act on, nothing sent
  created_at timestamptz not null default now(),
  constraint member_digests_pkey primary key (tenant_id, user_id, day)
);

create index member_pushes_due on public.member_pushes (next_attempt_at) where status in ('pending', 'sending');

create index member_pushes_sent on public.member_pushes (sent_at) where status = 'sent';

-- Grants and row-level security -------------------------------------------------------------------

grant select on table public.team_members to authenticated;
grant select, insert, update, delete on table public.team_members to service_role;
grant select, insert, update, delete on table public.member_pushes to service_role;
grant select on table public.digest_settings to authenticated;
grant select, insert, update, delete on table public.digest_settings to service_role;
grant select, insert, update, delete on table public.member_digests to service_role;

alter table public.team_members enable row level security;
alter table public.member_pushes enable row level security;  -- no policy: users never read it
alter table public.digest_settings enable row level security;
alter table public.member_digests enable row level security;  -- no policy: users never read it

-- Triggers ----------------------------------------------------------------------------------------

/**
 * One WhatsApp push per (event, member to tell): a high alert created → the lead's owner; an
 * overdue alert → the tenant's managers; each only if they want that kind and WhatsApp.
 */
create or replace function public.enqueue_member_pushes()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  if not exists (select from public.team_members m where m.whatsapp) then
    return null;
  end if;
  insert into public.member_pushes (tenant_id, user_id, event_id, kind, phone, text, next_attempt_at)
  select e.tenant_id, m.user_id, e.id, k.kind, m.phone,
         case when k.kind = 'high_alert' then
                case m.locale when 'en' then 'High alert on ' else 'Alerte haute sur ' end
              else case m.locale when 'en' then 'Overdue: high alert on ' else 'En retard : alerte haute sur ' end
         end || coalesce(l.name, a.lead_id) || ' — ' || a.message,
         public.push_due_at(e.at, m.time_zone, m.quiet_start, m.quiet_end)
  from new_events e
  cross join lateral (select case when e.event = 'created' and e.severity = 'high' then 'high_alert'
                                  when e.event = 'overdue' then 'overdue' end as kind) k
  join public.max_alerts a on a.tenant_id = e.tenant_id and a.id = e.alert_id
  left join public.leads l on l.tenant_id = a.tenant_id and l.lead_id = a.lead_id
  join public.team_members m
    on m.tenant_id = e.tenant_id and m.whatsapp and k.kind = any (m.notifications)
   and ((k.kind = 'high_alert' and m.user_id = l.owner_id) or (k.kind = 'overdue' and m.role = 'manager'))
  where k.kind is not null;
  return null;
end
$function$
;

create trigger alert_events_enqueue_pushes after insert on public.alert_events
  referencing new table as new_events
  for each statement execute function public.enqueue_member_pushes();

-- Policies ----------------------------------------------------------------------------------------

create policy "Team members are visible to the staff of their tenant and to themselves" on public.team_members
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant())
             and ((select public.sees_whole_tenant()) or user_id = (select auth.jwt()) ->> 'sub')));

create policy "Digest settings are visible to the admins of their tenant" on public.digest_settings
  for select to authenticated using (public.administers_tenant(tenant_id));

-- Functions ---------------------------------------------------------------------------------------

/** A member as the API shows them. */
create or replace function public.member_json(p_member public.team_members) returns jsonb
language sql immutable
as $$
  select jsonb_build_object(
    'user_id', p_member.user_id, 'name', p_member.name, 'role', p_member.role, 'phone', p_member.phone,
    'locale', p_member.locale, 'time_zone', p_member.time_zone,
    'quiet_hours', case when p_member.quiet_start is not null then jsonb_build_object(
                     'start', to_char(p_member.quiet_start, 'HH24:MI'), 'end', to_char(p_member.quiet_end, 'HH24:MI')) end,
    'notifications', to_jsonb(p_member.notifications), 'whatsapp', p_member.whatsapp,
    'updated_at', p_member.updated_at)
$$;
grant execute on function public.member_json(public.team_members) to authenticated, service_role;

/**
 * Add or replace a member of the tenant's directory (admins), `p_member` =
 * {user_id, name, role, phone, locale, time_zone, quiet_start, quiet_end, notifications, whatsapp}.
 */
create or replace function public.upsert_member(p_tenant text, p_member jsonb) returns jsonb
language plpgsql
security definer  -- writes the directory, which users cannot write themselves
set search_path = ''
as $$
declare
  v_member     public.team_members;
  v_constraint text;
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  if not exists (select from pg_catalog.pg_timezone_names z where z.name = p_member ->> 'time_zone') then
    perform public.raise_error('LW422', 'time_zone is not a known IANA time zone', 'timeZone');
  end if;
  insert into public.team_members as m (tenant_id, user_id, name, role, phone, locale, time_zone,
                                         quiet_start, quiet_end, notifications, whatsapp)
  values (p_tenant, p_member ->> 'user_id', p_member ->> 'name', p_member ->> 'role', p_member ->> 'phone',
          p_member ->> 'locale', p_member ->> 'time_zone', (p_member ->> 'quiet_start')::time,
          (p_member ->> 'quiet_end')::time, array(select jsonb_array_elements_text(p_member -> 'notifications')),
          (p_member ->> 'whatsapp')::boolean)
  on conflict (tenant_id, user_id) do update set
    name = excluded.name, role = excluded.role, phone = excluded.phone, locale = excluded.locale,
    time_zone = excluded.time_zone, quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end,
    notifications = excluded.notifications, whatsapp = excluded.whatsapp, updated_at = now()
  returning * into v_member;
  return jsonb_build_object('member', public.member_json(v_member));
exception
  when check_violation or not_null_violation then
    get stacked diagnostics v_constraint = constraint_name;
    -- raise_error's error, raised here so that the block visibly ends
    raise exception using errcode = 'LW422',
      message = 'the member has an invalid ' || coalesce(split_part(v_constraint, '_', 3), 'field'),
      detail = coalesce(nullif(split_part(v_constraint, '_', 3), ''), 'body');
end
$$;
grant execute on function public.upsert_member(text, jsonb) to authenticated, service_role;

/** The tenant's directory, by name (admins). */
create or replace function public.list_members(p_tenant text) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  return jsonb_build_object('members', coalesce(
    (select jsonb_agg(public.member_json(m) order by m.name, m.user_id)
     from public.team_members m where m.tenant_id = p_tenant), '[]'));
end
$$;
grant execute on function public.list_members(text) to authenticated, service_role;

/**
 * When a push written at `p_at` may leave: at once, or — inside the quiet hours [`p_start`,
 * `p_end`) local time in `p_zone` (spanning midnight when start > end) — when they end.
 */
create or replace function public.push_due_at(p_at timestamptz, p_zone text, p_start time, p_end time) returns timestamptz
language sql stable
as $$
  select case
    when p_start is null then p_at
    when (p_start > p_end and ((p_at at time zone p_zone)::time >= p_start or (p_at at time zone p_zone)::time < p_end))
      or (p_start < p_end and (p_at at time zone p_zone)::time >= p_start and (p_at at time zone p_zone)::time < p_end)
    then (((p_at at time zone p_zone)::date
           + case when (p_at at time zone p_zone)::time < p_end then 0 else 1 end) + p_end) at time zone p_zone
    else p_at
  end
$$;
grant execute on function public.push_due_at(timestamptz, text, time, time) to service_role;

/** Claim due pushes under a lease, as claim_webhook_deliveries does (service only): [{id, attempt, tenant_id, phone, text}]. */
create or replace function public.claim_member_pushes(p_now timestamp with time zone DEFAULT now(), p_limit integer DEFAULT 100, p_lease_seconds integer DEFAULT 120)
 RETURNS jsonb
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
declare
  v_claimed jsonb;
begin
  with due as (
    select p.tenant_id, p.id from public.member_pushes p
    where p.status in ('pending', 'sending') and p.next_attempt_at <= p_now
    order by p.next_attempt_at
    limit p_limit
    for update skip locked
  ),
  claimed as (
    update public.member_pushes p
    set status = 'sending', attempts = p.attempts + 1, next_attempt_at = p_now + make_interval(secs => p_lease_seconds)
    from due where p.tenant_id = due.tenant_id and p.id = due.id
    returning p.id, p.attempts, p.tenant_id, p.phone, p.text
  )
  select coalesce(jsonb_agg(jsonb_build_object('id', c.id, 'attempt', c.attempts, 'tenant_id', c.tenant_id,
                                               'phone', c.phone, 'text', c.text)), '[]')
  into v_claimed from claimed c;
  return v_claimed;
end
$function$
;
grant execute on function public.claim_member_pushes(timestamptz, integer, integer) to service_role;

/** Record claimed pushes' outcomes [{tenant_id, id, attempt, error}] (error null: sent); retried like webhooks. */
create or replace function public.record_member_pushes(p_results jsonb, p_now timestamptz default now()) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_result jsonb;
begin
  with recorded as (
    update public.member_pushes p
    set status = case when r.error is null then 'sent'
                      when public.webhook_retry_delay(r.attempt) is null then 'failed' else 'pending' end,
        next_attempt_at = case when r.error is not null and public.webhook_retry_delay(r.attempt) is not null
                               then p_now + public.webhook_retry_delay(r.attempt) else p.next_attempt_at end,
        last_error = left(r.error, 200),
        sent_at = case when r.error is null then p_now end
    from jsonb_to_recordset(p_results) as r (tenant_id text, id uuid, attempt integer, error text)
    where p.tenant_id = r.tenant_id and p.id = r.id and p.status = 'sending' and p.attempts = r.attempt
    returning p.status
  )
  select jsonb_build_object('sent', count(*) filter (where r.status = 'sent'),
                            'retrying', count(*) filter (where r.status = 'pending'),
                            'failed', count(*) filter (where r.status = 'failed'))
  into v_result from recorded r;
  return v_result;
end
$$;
grant execute on function public.record_member_pushes(jsonb, timestamptz) to service_role;

/** The tenant's digest hour and zone as the API shows them (the defaults when it has none). */
create or replace function public.digest_settings_json(p_tenant text) returns jsonb
language sql stable
set search_path = ''
as $$
  select jsonb_build_object('hour', coalesce(s.hour, 8), 'time_zone', coalesce(s.time_zone, 'Europe/Paris'),
                            'default', s.tenant_id is null)
  from (select) one
  left join public.digest_settings s on s.tenant_id = p_tenant
$$;
grant execute on function public.digest_settings_json(text) to authenticated, service_role;

/** The tenant's digest hour and time zone (admins). */
create or replace function public.get_digest_settings(p_tenant text) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  return jsonb_build_object('digest', public.digest_settings_json(p_tenant));
end
$$;
grant execute on function public.get_digest_settings(text) to authenticated, service_role;

/** Set the local hour (0-23) and IANA time zone of the tenant's morning digest (admins). */
create or replace function public.set_digest_settings(p_tenant text, p_hour integer, p_time_zone text) returns jsonb
language plpgsql
security definer  -- writes the settings, which users cannot write themselves
set search_path = ''
as $$
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  if p_hour is null or p_hour not between 0 and 23 then
    perform public.raise_error('LW422', 'hour must be between 0 and 23', 'hour');
  end if;
  if not exists (select from pg_catalog.pg_timezone_names z where z.name = p_time_zone) then
    perform public.raise_error('LW422', 'timeZone is not a known IANA time zone', 'timeZone');
  end if;
  insert into public.digest_settings as s (tenant_id, hour, time_zone)
  values (p_tenant, p_hour, p_time_zone)
  on conflict (tenant_id) do update set hour = excluded.hour, time_zone = excluded.time_zone, updated_at = now();
  return jsonb_build_object('digest', public.digest_settings_json(p_tenant));
end
$$;
grant execute on function public.set_digest_settings(text, integer, text) to authenticated, service_role;

/**
 * What a digest tells about the alerts of a tenant — of the leads `p_owner` owns, or (null) all —
 * over [`p_since`, `p_until`): how many alerts were created, escalated and resolved then; how many
 * are to act on now (unresolved, not snoozed) and how many of those are overdue; and the first
 * five to act on, in the dashboard's order (high, med, low, then newest), as the list shows them.
 */
create or replace function public.digest_content(p_tenant text, p_owner text, p_since timestamptz, p_until timestamptz)
returns jsonb
language sql stable
set search_path = ''
as $$
  with owned as (
    select l.lead_id from public.leads l where l.tenant_id = p_tenant and l.owner_id = p_owner
  ),
  to_act_on as (
    select a from public.max_alerts a
    where a.tenant_id = p_tenant and a.resolved_at is null and a.snoozed_until is null
      and (p_owner is null or a.lead_id in (select o.lead_id from owned o))
  ),
  happened as (
    select e.event, e.alert_id from public.alert_events e
    where e.tenant_id = p_tenant and e.at >= p_since and e.at < p_until
      and e.event in ('created', 'escalated', 'resolved')
      and (p_owner is null or e.lead_id in (select o.lead_id from owned o))
  ),
  first_five as (
    select t.a, l.name, l.email, l.owner_id
    from (select t.a from to_act_on t
          order by (t.a).severity_rank, (t.a).created_at desc, (t.a).id desc limit 5) t
    left join public.leads l on l.tenant_id = p_tenant and l.lead_id = (t.a).lead_id
  )
  select jsonb_build_object(
    'new', (select count(distinct h.alert_id) from happened h where h.event = 'created'),
    'escalated', (select count(distinct h.alert_id) from happened h where h.event = 'escalated'),
    'resolved', (select count(distinct h.alert_id) from happened h where h.event = 'resolved'),
    'overdue', (select count(*) from to_act_on t where (t.a).overdue_at is not null),
    'to_act_on', (select count(*) from to_act_on),
    'first', coalesce((select jsonb_agg(public.alert_json(f.a, f.name, f.email) || jsonb_build_object('owner_id', f.owner_id)
                                        order by (f.a).severity_rank, (f.a).created_at desc, (f.a).id desc)
                       from first_five f), '[]'))
$$;
grant execute on function public.digest_content(text, text, timestamptz, timestamptz) to service_role;

/** A digest as one WhatsApp message in `p_locale` ('fr' or 'en'). */
create or replace function public.digest_text(p_digest jsonb, p_locale text) returns text
language sql immutable
set search_path = ''
as $$
  select case p_locale
           when 'en' then 'Leadwatch morning digest, ' || (p_digest ->> 'day') || E'\n'
                       || 'New since yesterday: ' || (p_digest ->> 'new') || ' · Escalated: ' || (p_digest ->> 'escalated')
                       || ' · Overdue: ' || (p_digest ->> 'overdue') || ' · Resolved yesterday: ' || (p_digest ->> 'resolved')
                       || E'\n' || 'To act on first (' || (p_digest ->> 'to_act_on') || ' in all):'
           else 'Leadwatch, point du matin du ' || to_char((p_digest ->> 'day')::date, 'DD/MM/YYYY') || E'\n'
                || 'Nouvelles depuis hier : ' || (p_digest ->> 'new') || ' · Escaladées : ' || (p_digest ->> 'escalated')
                || ' · En retard : ' || (p_digest ->> 'overdue') || ' · Résolues hier : ' || (p_digest ->> 'resolved')
                || E'\n' || 'À traiter en premier (' || (p_digest ->> 'to_act_on') || ' en tout) :'
         end
         || coalesce((select string_agg(
                        E'\n' || f.n || '. '
                        || case p_locale
                             when 'en' then case f.a ->> 'severity' when 'high' then 'High' when 'med' then 'Medium' else 'Low' end
                             else case f.a ->> 'severity' when 'high' then 'Haute' when 'med' then 'Moyenne' else 'Basse' end
                           end
                        || ' — ' || coalesce(f.a ->> 'lead_name', f.a ->> 'lead_id')
                        || case p_locale when 'en' then ': ' else ' : ' end || (f.a ->> 'message'),
                        '' order by f.n)
                      from jsonb_array_elements(p_digest -> 'first') with ordinality as f (a, n)), '')
$$;
grant execute on function public.digest_text(jsonb, text) to service_role;

/**
 * Write the digests that have come due by `p_now` (service and scheduler only): for every member
 * who wants the digest and whose tenant's local hour has passed today (in the tenant's zone),
 * unless they have today's already, one row per member and day — the window is the day before,
 * from yesterday's hour to today's, so that no event is told twice or missed — and, when there is
 * something to act on, its outbox rows: a `digest.daily` delivery per enabled endpoint of the
 * tenant that asked for it, and a WhatsApp push (as quiet hours allow) for members who asked for
 * WhatsApp. The member/day key makes it idempotent: a concurrent run waits for this one's rows
 * and writes nothing for those members. Answers {digests, empty, deliveries, pushes}.
 */
create or replace function public.write_daily_digests(p_now timestamptz default now()) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_result jsonb;
begin
  if not public.is_trusted_caller() then
    perform public.raise_error('LW403', 'digests are written by the service');
  end if;
  with due as (
    select m.tenant_id, m.user_id, m.name, m.role, m.locale, m.phone, m.whatsapp, m.time_zone,
           m.quiet_start, m.quiet_end, c.zone, c.day,
           (c.day - 1 + make_time(c.hour, 0, 0)) at time zone c.zone as since,
           (c.day + make_time(c.hour, 0, 0)) at time zone c.zone as until
    from public.team_members m
    left join public.digest_settings s on s.tenant_id = m.tenant_id
    cross join lateral (select coalesce(s.time_zone, 'Europe/Paris') as zone, coalesce(s.hour, 8) as hour,
                               (p_now at time zone coalesce(s.time_zone, 'Europe/Paris'))::date as day) c
    where 'digest' = any (m.notifications)
      and (p_now at time zone c.zone)::time >= make_time(c.hour, 0, 0)
      and not exists (select from public.member_digests g
                      where g.tenant_id = m.tenant_id and g.user_id = m.user_id and g.day = c.day)
  ),
  composed as (
    select d.*, x.content
    from due d
    cross join lateral (select public.digest_content(d.tenant_id, case when d.role = 'agent' then d.user_id end,
                                                     d.since, d.until) as content) x
  ),
  written as (
    insert into public.member_digests (tenant_id, user_id, day, digest)
    select c.tenant_id, c.user_id, c.day,
           case when (c.content ->> 'to_act_on')::integer > 0 then
             jsonb_build_object('day', c.day, 'time_zone', c.zone, 'since', c.since, 'until', c.until,
                                'recipient', jsonb_build_object('user_id', c.user_id, 'name', c.name,
                                                                'role', c.role, 'locale', c.locale),
                                'scope', case when c.role = 'agent' then 'own_leads' else 'tenant' end)
             || c.content
           end
    from composed c
    on conflict (tenant_id, user_id, day) do nothing
    returning tenant_id, user_id, day, digest
  ),
  deliveries as (
    insert into public.webhook_deliveries (tenant_id, endpoint_id, event_type, payload, next_attempt_at)
    select w.tenant_id, e.id, 'digest.daily',
           jsonb_build_object('type', 'digest.daily', 'timestamp', p_now, 'data', jsonb_build_object('digest', w.digest)),
           p_now
    from written w
    join public.webhook_endpoints e on e.tenant_id = w.tenant_id and e.enabled and 'digest.daily' = any (e.events)
    where w.digest is not null
    returning 1
  ),
  pushes as (
    insert into public.member_pushes (tenant_id, user_id, kind, phone, text, next_attempt_at)
    select w.tenant_id, w.user_id, 'digest', d.phone, public.digest_text(w.digest, d.locale),
           public.push_due_at(p_now, d.time_zone, d.quiet_start, d.quiet_end)
    from written w
    join due d on d.tenant_id = w.tenant_id and d.user_id = w.user_id
    where w.digest is not null and d.whatsapp
    returning 1
  )
  select jsonb_build_object('digests', count(*) filter (where w.digest is not null),
                            'empty', count(*) filter (where w.digest is null),
                            'deliveries', (select count(*) from deliveries),
                            'pushes', (select count(*) from pushes))
  into v_result
  from written w;
  return v_result;
end
$$;
grant execute on function public.write_daily_digests(timestamptz) to service_role;

-- =================================================================================================
-- supabase/schemas/90_retention.sql
-- =================================================================================================

-- Retention: how long each tenant keeps its history, and pruning what notifications delivered.

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Tables ------------------------------------------------------------------------------------------

create table public.retention_policies (
  tenant_id             text not null,  -- '*' holds the default for every tenant without a row of its own
  activities_after      interval,       -- activities that occurred longer ago are removed (null: kept)
  resolved_alerts_after interval,       -- alerts resolved longer ago are removed with their history (null: kept)
  constraint retention_policies_pkey primary key (tenant_id),
  -- HotLead24h reads the last 24 h of activities: keep at least two days.
  constraint retention_policies_activities_two_days check (activities_after >= interval '2 days'),
  constraint retention_policies_alerts_positive check (resolved_alerts_after > interval '0')
);

-- Grants and row-level security -------------------------------------------------------------------

grant select on table public.retention_policies to authenticated;
grant select, insert, update, delete on table public.retention_policies to service_role;

alter table public.retention_policies enable row level security;

-- Policies ----------------------------------------------------------------------------------------

create policy "Retention policies are visible to the staff of their tenant, and the default to all" on public.retention_policies
  for select to authenticated
  using (tenant_id = '*' or (select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant()) and (select public.sees_whole_tenant())));

-- Functions ---------------------------------------------------------------------------------------

/**
 * Remove, for one tenant or all, at most `p_batch` activities and `p_batch` resolved alerts (with
 * their history) that are past their tenant's retention ages, and answer how many rows went and
 * whether more remain (`more`: call again). Never removes what the rules still need: the lead's
 * state keeps the times the time-based rules read; each lead keeps its last 5 inbound and last 2
 * outbound (what PreferredChannel reads); a resolved alert is kept while its lead's silence lasts
 * (what stops it being raised again). Service and scheduler only.
 */
create or replace function public.apply_retention(p_tenant text DEFAULT NULL::text, p_batch integer DEFAULT 5000, p_now timestamp with time zone DEFAULT now())
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  v_activities integer;
  v_alerts     integer;
  v_events     integer;
begin
  if not public.is_trusted_caller() then
    perform public.raise_error('LW403', 'retention is run by the service');
  end if;
  if p_batch is null or p_batch not between 1 and 50000 then
    perform public.raise_error('LW422', 'batch must be between 1 and 50000', 'batch');
  end if;
  perform set_config('leadwatch.history_maintenance', 'on', true);

  -- Activities, by when they occurred (no order: the scan stops at the batch's last row).
  with doomed as (
    select a.tenant_id, a.id
    from public.lead_activities a
    cross join lateral (select r.activities_after from public.retention_policies r
                        where r.tenant_id in (a.tenant_id, '*')
                        order by r.tenant_id = '*' limit 1) r
    where a.occurred_at < p_now - r.activities_after
      and (p_tenant is null or a.tenant_id = p_tenant)
      and (select count(*)
           from (select from public.lead_activities y
                 where y.tenant_id = a.tenant_id and y.lead_id = a.lead_id and y.direction = a.direction
                   and public.counts_as_contact(y.status) and (y.occurred_at, y.id) > (a.occurred_at, a.id)
                 limit case a.direction when 'in' then 5 else 2 end) newer)
          = case a.direction when 'in' then 5 else 2 end
    limit p_batch
  ),
  removed as (
    delete from public.lead_activities a using doomed d where a.tenant_id = d.tenant_id and a.id = d.id returning 1
  )
  select count(*) into v_activities from removed;

  -- Resolved alerts and their history.
  with doomed as (
    select a.id, a.tenant_id, a.lead_id
    from public.max_alerts a
    cross join lateral (select r.resolved_alerts_after from public.retention_policies r
                        where r.tenant_id in (a.tenant_id, '*')
                        order by r.tenant_id = '*' limit 1) r
    where a.resolved_at < p_now - r.resolved_alerts_after
      and (p_tenant is null or a.tenant_id = p_tenant)
      and (a.cycle_started_at is null
           or exists (select from public.lead_state s
                      where s.tenant_id = a.tenant_id and s.lead_id = a.lead_id
                        and s.last_activity_at > a.cycle_started_at))
    limit p_batch
  ),
  events as (
    delete from public.alert_events e using doomed d
    where e.tenant_id = d.tenant_id and e.lead_id = d.lead_id and e.alert_id = d.id
    returning 1
  ),
  alerts as (
    delete from public.max_alerts a using doomed d where a.tenant_id = d.tenant_id and a.id = d.id returning 1
  )
  select (select count(*) from alerts), (select count(*) from events) into v_alerts, v_events;

  return jsonb_build_object('activities', v_activities, 'alerts', v_alerts, 'events', v_events,
                            'more', v_activities = p_batch or v_alerts = p_batch);
end
$function$
;
grant execute on function public.apply_retention(text, integer, timestamptz) to service_role;

/**
 * Remove, for one tenant or all, at most `p_batch` each of the webhook deliveries delivered, the
 * pushes sent and the digests written more than 30 days before `p_now`; `more`: call again.
 * Service and scheduler only.
 */
create or replace function public.prune_notifications(p_tenant text default null, p_batch integer default 5000,
                                           p_now timestamptz default now())
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_deliveries integer;
  v_pushes     integer;
  v_digests    integer;
begin
  if not public.is_trusted_caller() then
    perform public.raise_error('LW403', 'pruning is run by the service');
  end if;
  if p_batch is null or p_batch not between 1 and 50000 then
    perform public.raise_error('LW422', 'batch must be between 1 and 50000', 'batch');
  end if;
  with doomed as (
    select d.id from public.webhook_deliveries d
    where d.status = 'delivered' and d.delivered_at < p_now - interval '30 days'
      and (p_tenant is null or d.tenant_id = p_tenant)
    limit p_batch
  ),
  removed as (delete from public.webhook_deliveries d using doomed x where d.id = x.id returning 1)
  select count(*) into v_deliveries from removed;

  with doomed as (
    select p.id from public.member_pushes p
    where p.status = 'sent' and p.sent_at < p_now - interval '30 days'
      and (p_tenant is null or p.tenant_id = p_tenant)
    limit p_batch
  ),
  removed as (delete from public.member_pushes p using doomed x where p.id = x.id returning 1)
  select count(*) into v_pushes from removed;

  with doomed as (
    select g.tenant_id, g.user_id, g.day from public.member_digests g
    where g.created_at < p_now - interval '30 days' and (p_tenant is null or g.tenant_id = p_tenant)
    limit p_batch
  ),
  removed as (
    delete from public.member_digests g using doomed x
    where g.tenant_id = x.tenant_id and g.user_id = x.user_id and g.day = x.day
    returning 1
  )
  select count(*) into v_digests from removed;

  return jsonb_build_object('deliveries', v_deliveries, 'pushes', v_pushes, 'digests', v_digests,
                            'more', greatest(v_deliveries, v_pushes, v_digests) = p_batch);
end
$$;
grant execute on function public.prune_notifications(text, integer, timestamptz) to service_role;
