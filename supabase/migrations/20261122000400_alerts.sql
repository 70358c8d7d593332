-- Alerts: the rules (defaults and per-tenant overrides), the living alerts themselves, their
-- append-only history, and the `active_alerts` view that orders them as the dashboard shows them.

-- Tables ------------------------------------------------------------------------------------------

create table public.alert_rules (
  tenant_id          text not null default '*',   -- '*' holds the defaults; a tenant's own row replaces them
  type               public.alert_type not null,
  enabled            boolean not null default true,
  threshold          interval not null,           -- raised once the condition has held this long
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
  constraint alert_rules_pkey primary key (tenant_id, type),
  constraint alert_rules_locale_known check (locale in ('fr', 'en')),
  constraint alert_rules_ladder_complete check ((escalate_after is null) = (escalated_severity is null)),
  constraint alert_rules_ladder_rises check (escalate_after is null or escalate_after > threshold)
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
  constraint max_alerts_pkey primary key (id),
  constraint max_alerts_resolution_known check (resolution in ('activity', 'manual', 'superseded', 'rule'))
);
-- One active alert per tenant, lead and type (the reference's index).
create unique index idx_max_alerts_unique_active
  on public.max_alerts (tenant_id, lead_id, type) where resolved_at is null;
create index idx_max_alerts_tenant_lead on public.max_alerts (tenant_id, lead_id);
-- The dashboard's order (high, med, low, then newest) read straight from an index.
create index idx_max_alerts_active_order
  on public.max_alerts (tenant_id, severity_rank, created_at desc, id desc) where resolved_at is null;

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
  constraint alert_events_pkey primary key (id),
  constraint alert_events_event_known check (event in ('created', 'escalated', 'resolved', 'reopened'))
);
-- A lead's history (merging a provisional lead moves it; row-level security filters by lead).
create index alert_events_tenant_lead on public.alert_events (tenant_id, lead_id);

-- How many alerts are active per tenant, severity and type: the dashboard's stats without counting
-- rows. Kept by the triggers below, in the transaction that changes the alerts.
create table public.alert_counts (
  tenant_id text not null,
  severity  public.severity not null,
  type      public.alert_type not null,
  active    bigint not null default 0,
  constraint alert_counts_pkey primary key (tenant_id, severity, type)
);

-- Grants and row-level security -------------------------------------------------------------------

grant select on table public.alert_rules, public.max_alerts, public.alert_events to authenticated, service_role;
grant insert, update, delete on table public.alert_rules, public.max_alerts to service_role;
grant insert on table public.alert_events to service_role;   -- append-only: nobody updates or deletes history
grant select on table public.alert_counts to authenticated, service_role;
alter table public.alert_rules enable row level security;
alter table public.max_alerts enable row level security;
alter table public.alert_events enable row level security;
alter table public.alert_counts enable row level security;

-- Views -------------------------------------------------------------------------------------------

-- The reference's view, extended with the lead's name and email; RLS of the caller applies.
create view public.active_alerts with (security_invoker = true) as
select a.*, l.name as lead_name, l.email as lead_email
from public.max_alerts a
left join public.leads l on l.tenant_id = a.tenant_id and l.lead_id = a.lead_id
where a.resolved_at is null
order by a.severity_rank, a.created_at desc, a.id desc;
grant select on public.active_alerts to authenticated, service_role;

-- Triggers ----------------------------------------------------------------------------------------

/**
 * Record every alert created, and count the active ones, set-based, whatever path created them.
 * Security definer: it writes the history and the counts, which no caller writes directly.
 */
create function public.record_created_alerts() returns trigger
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

/** Record every escalation, resolution and reopening, and move the counts, set-based, whatever path made it. */
create function public.record_changed_alerts() returns trigger
language plpgsql
security definer
set search_path = ''
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

/** Alerts are not deleted in normal operation; if they are, the counts follow. */
create function public.record_deleted_alerts() returns trigger
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

create trigger max_alerts_record_created after insert on public.max_alerts
  referencing new table as new_alerts
  for each statement execute function public.record_created_alerts();
create trigger max_alerts_record_changed after update on public.max_alerts
  referencing old table as old_alerts new table as new_alerts
  for each statement execute function public.record_changed_alerts();
create trigger max_alerts_record_deleted after delete on public.max_alerts
  referencing old table as old_alerts
  for each statement execute function public.record_deleted_alerts();

-- Policies ----------------------------------------------------------------------------------------

create policy "Rules are visible to their tenant's users, and the defaults to all of them" on public.alert_rules
  for select to authenticated
  using (tenant_id = '*' or (select public.sees_all_tenants()) or tenant_id = (select public.current_tenant()));
create policy "Alerts are visible to whoever may see the lead" on public.max_alerts
  for select to authenticated using (public.can_see_lead(tenant_id, lead_id));
create policy "Alert history is visible to whoever may see the lead" on public.alert_events
  for select to authenticated using (public.can_see_lead(tenant_id, lead_id));
create policy "Alert counts are visible to the staff of their tenant" on public.alert_counts
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant()) and (select public.sees_whole_tenant())));

-- Functions ---------------------------------------------------------------------------------------

/** The rules in force for a tenant: its own row for a type where it has one, else the default. */
create function public.rules_for(p_tenant text) returns setof public.alert_rules
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
create function public.rule_thresholds(p_tenant text)
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

-- Data --------------------------------------------------------------------------------------------

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
