-- Pushes to people: when a high alert is created, its lead's owner is told; when an alert becomes
-- overdue, the tenant's managers are — by WhatsApp, for members of the directory who asked for it.
-- Written, like webhook deliveries, by the database in the transaction recording the event, and
-- due at once or, inside the member's quiet hours, when those end in their time zone (held, never dropped).

-- Tables ------------------------------------------------------------------------------------------

create table public.member_pushes (
  id              uuid not null default public.uuid_v7(),
  tenant_id       text not null,
  user_id         text not null,
  event_id        bigint not null,
  kind            text not null,                   -- high_alert (to the owner) or overdue (to managers)
  phone           text not null,                   -- the member's WhatsApp number when it was written
  text            text not null,                   -- the message, in the member's locale
  status          text not null default 'pending', -- pending, sending (under lease), sent, failed
  attempts        integer not null default 0,
  next_attempt_at timestamptz not null,            -- due from then (quiet hours pushed it to their end)
  last_error      text,
  sent_at         timestamptz,
  created_at      timestamptz not null default now(),
  constraint member_pushes_pkey primary key (id),
  constraint member_pushes_once_per_event unique (event_id, user_id),
  constraint member_pushes_kind_known check (kind in ('high_alert', 'overdue')),
  constraint member_pushes_status_known check (status in ('pending', 'sending', 'sent', 'failed'))
);
create index member_pushes_due on public.member_pushes (next_attempt_at) where status in ('pending', 'sending');

-- Grants and row-level security -------------------------------------------------------------------

revoke all on table public.member_pushes from public, anon, authenticated, service_role;
grant select, insert, update, delete on table public.member_pushes to service_role;
alter table public.member_pushes enable row level security;  -- no policy: users never read it

-- Functions ---------------------------------------------------------------------------------------

/**
 * When a push written at `p_at` may leave: at once, or — inside the quiet hours [`p_start`,
 * `p_end`) local time in `p_zone` (spanning midnight when start > end) — when they end.
 */
create function public.push_due_at(p_at timestamptz, p_zone text, p_start time, p_end time) returns timestamptz
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

-- Triggers ----------------------------------------------------------------------------------------

/**
 * One WhatsApp push per (event, member to tell): a high alert created → the lead's owner; an
 * overdue alert → the tenant's managers; each only if they want that kind and WhatsApp.
 */
create function public.enqueue_member_pushes() returns trigger
language plpgsql
security definer  -- reads the directory and writes pushes, which the callers recording events cannot
set search_path = ''
as $$
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
  join public.max_alerts a on a.id = e.alert_id
  left join public.leads l on l.tenant_id = a.tenant_id and l.lead_id = a.lead_id
  join public.team_members m
    on m.tenant_id = e.tenant_id and m.whatsapp and k.kind = any (m.notifications)
   and ((k.kind = 'high_alert' and m.user_id = l.owner_id) or (k.kind = 'overdue' and m.role = 'manager'))
  where k.kind is not null;
  return null;
end
$$;

create trigger alert_events_enqueue_pushes after insert on public.alert_events
  referencing new table as new_events
  for each statement execute function public.enqueue_member_pushes();

/** Claim due pushes under a lease, as claim_webhook_deliveries does (service only): [{id, attempt, tenant_id, phone, text}]. */
create function public.claim_member_pushes(p_now timestamptz default now(), p_limit integer default 100,
                                           p_lease_seconds integer default 120)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_claimed jsonb;
begin
  with due as (
    select p.id from public.member_pushes p
    where p.status in ('pending', 'sending') and p.next_attempt_at <= p_now
    order by p.next_attempt_at
    limit p_limit
    for update skip locked
  ),
  claimed as (
    update public.member_pushes p
    set status = 'sending', attempts = p.attempts + 1, next_attempt_at = p_now + make_interval(secs => p_lease_seconds)
    from due where p.id = due.id
    returning p.id, p.attempts, p.tenant_id, p.phone, p.text
  )
  select coalesce(jsonb_agg(jsonb_build_object('id', c.id, 'attempt', c.attempts, 'tenant_id', c.tenant_id,
                                               'phone', c.phone, 'text', c.text)), '[]')
  into v_claimed from claimed c;
  return v_claimed;
end
$$;
grant execute on function public.claim_member_pushes(timestamptz, integer, integer) to service_role;

/** Record claimed pushes' outcomes [{id, attempt, error}] (error null: sent); retried like webhooks. */
create function public.record_member_pushes(p_results jsonb, p_now timestamptz default now()) returns jsonb
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
    from jsonb_to_recordset(p_results) as r (id uuid, attempt integer, error text)
    where p.id = r.id and p.status = 'sending' and p.attempts = r.attempt
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
