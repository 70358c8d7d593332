-- Activities: every interaction with a lead (WhatsApp, email, call), as the reference defines it,
-- plus when it happened (occurred_at) and the provider's message id (external_id) for idempotency.

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
  constraint lead_activities_pkey primary key (id),
  constraint lead_activities_direction_known check (direction in ('in', 'out')),
  constraint lead_activities_snippet_short check (char_length(message_snippet) <= 100)
);
-- The reference's index, extended so that a lead's timeline is read newest first from the index.
create index idx_lead_activities_tenant_lead
  on public.lead_activities (tenant_id, lead_id, occurred_at desc, id desc);
create index idx_lead_activities_created on public.lead_activities (created_at desc);
-- A replayed webhook or a retried call is stored once.
create unique index idx_lead_activities_external_id
  on public.lead_activities (tenant_id, channel, external_id) where external_id is not null;

-- Grants and row-level security -------------------------------------------------------------------

grant select on table public.lead_activities to authenticated, service_role;
grant insert, update, delete on table public.lead_activities to service_role;
alter table public.lead_activities enable row level security;

-- Policies ----------------------------------------------------------------------------------------

create policy "Activities are visible to whoever may see the lead" on public.lead_activities
  for select to authenticated using (public.can_see_lead(tenant_id, lead_id));
