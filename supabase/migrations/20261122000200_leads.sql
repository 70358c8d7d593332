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

grant select, insert, update, delete on table public.leads to authenticated, service_role;
grant select on table public.lead_state to authenticated, service_role;
grant insert, update, delete on table public.lead_state to service_role;
alter table public.leads enable row level security;
alter table public.lead_state enable row level security;

-- Policies ----------------------------------------------------------------------------------------

create policy "Leads are visible to members of their tenant" on public.leads
  for select to authenticated using ((select public.is_member_of(tenant_id)));
create policy "Leads are added by members of their tenant" on public.leads
  for insert to authenticated with check ((select public.is_member_of(tenant_id)));
create policy "Leads are updated by members of their tenant" on public.leads
  for update to authenticated using ((select public.is_member_of(tenant_id)))
  with check ((select public.is_member_of(tenant_id)));
create policy "Lead state is visible to members of its tenant" on public.lead_state
  for select to authenticated using ((select public.is_member_of(tenant_id)));
