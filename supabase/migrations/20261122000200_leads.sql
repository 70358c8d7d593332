-- Leads: the directory (who the lead is) and the per-lead state the rules read (when we last heard
-- from them, when each time-based rule next falls due).

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
create unique index leads_phone_unique on public.leads (tenant_id, phone) where phone is not null;

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
  constraint lead_state_pkey primary key (tenant_id, lead_id)
);
-- The sweep reads only the leads whose next due time has come.
create index idx_lead_state_next_due on public.lead_state (next_due_at) where next_due_at is not null;

-- Grants and row-level security -------------------------------------------------------------------

-- Users read the directory; they change it only through upsert_leads, which keeps lead_state in step.
grant select on table public.leads, public.lead_state to authenticated, service_role;
grant insert, update, delete on table public.leads, public.lead_state to service_role;
alter table public.leads enable row level security;
alter table public.lead_state enable row level security;

-- Functions ---------------------------------------------------------------------------------------

/** The leads an agent owns in their tenant (none for any other role: they see all or nothing). */
create function public.owned_leads() returns setof text
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
create function public.can_see_lead(p_tenant text, p_lead_id text) returns boolean
language sql stable
as $$
  select (select public.sees_all_tenants())
      or (p_tenant = (select public.current_tenant())
          and ((select public.sees_whole_tenant()) or p_lead_id in (select public.owned_leads())))
$$;
grant execute on function public.can_see_lead(text, text) to authenticated, service_role;

/**
 * Stop unless the caller may act in this tenant with one of these roles (403). The service and
 * platform staff may act in any tenant. The first statement of every function that writes.
 */
create function public.assert_acts_in(p_tenant text, p_roles text[] default array['admin', 'manager', 'agent'])
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

-- Policies ----------------------------------------------------------------------------------------

create policy "Leads are visible to staff of their tenant and to the agent who owns them" on public.leads
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant())
             and ((select public.sees_whole_tenant())
                  or (owner_id = (select auth.jwt()) ->> 'sub' and (select public.current_app_role()) = 'agent'))));
create policy "Lead state is visible to whoever may see the lead" on public.lead_state
  for select to authenticated using (public.can_see_lead(tenant_id, lead_id));
