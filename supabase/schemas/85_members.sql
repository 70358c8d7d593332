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
  v_member        public.team_members;
  v_constraint    text;
  v_notifications text[];
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  if not exists (select from pg_catalog.pg_timezone_names z where z.name = p_member ->> 'time_zone') then
    perform public.raise_error('LW422', 'time_zone is not a known IANA time zone', 'timeZone');
  end if;
  -- Citus refuses a subquery in VALUES and a STABLE function in DO UPDATE SET: the list is read
  -- first, and updated_at is the insert's own (its default, now())
  v_notifications := array(select jsonb_array_elements_text(p_member -> 'notifications'));
  insert into public.team_members as m (tenant_id, user_id, name, role, phone, locale, time_zone,
                                         quiet_start, quiet_end, notifications, whatsapp)
  values (p_tenant, p_member ->> 'user_id', p_member ->> 'name', p_member ->> 'role', p_member ->> 'phone',
          p_member ->> 'locale', p_member ->> 'time_zone', (p_member ->> 'quiet_start')::time,
          (p_member ->> 'quiet_end')::time, v_notifications,
          (p_member ->> 'whatsapp')::boolean)
  on conflict (tenant_id, user_id) do update set
    name = excluded.name, role = excluded.role, phone = excluded.phone, locale = excluded.locale,
    time_zone = excluded.time_zone, quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end,
    notifications = excluded.notifications, whatsapp = excluded.whatsapp, updated_at = excluded.updated_at
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
  on conflict (tenant_id) do update set hour = excluded.hour, time_zone = excluded.time_zone,
                                        updated_at = excluded.updated_at;  -- its default, now() (Citus: no STABLE here)
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
