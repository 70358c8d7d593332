-- The morning digest: once a day per member of the team directory who wants it, at the tenant's
-- hour in the tenant's time zone (by default 08:00 Europe/Paris), what happened since the day
-- before — new, escalated, resolved — how many alerts are overdue, and the five alerts to act on
-- first in the dashboard's order: an agent's own leads, a manager's or an admin's whole tenant.
-- Written by the database in one transaction, like every other notification: one row per member
-- and day (the idempotency key: a retried or concurrent run writes nothing twice), and in the same
-- statement its outbox rows — a `digest.daily` webhook delivery per endpoint that asked for it,
-- and one WhatsApp push when the member asked for WhatsApp. Nobody with nothing to act on is sent
-- anything. The every-minute deliverer (`POST /api/notifications/deliver`) writes the digests that
-- have come due before it sends what is due.

-- Tables ------------------------------------------------------------------------------------------

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

-- A digest push has no alert event behind it.
alter table public.member_pushes
  alter column event_id drop not null,
  drop constraint member_pushes_kind_known,
  add constraint member_pushes_kind_known check (kind in ('high_alert', 'overdue', 'digest'));

-- Grants and row-level security -------------------------------------------------------------------

revoke all on table public.digest_settings from public, anon, authenticated, service_role;
revoke all on table public.member_digests from public, anon, authenticated, service_role;
grant select on table public.digest_settings to authenticated;
grant select, insert, update, delete on table public.digest_settings, public.member_digests to service_role;
alter table public.digest_settings enable row level security;
alter table public.member_digests enable row level security;  -- no policy: users never read it

-- Policies ----------------------------------------------------------------------------------------

create policy "Digest settings are visible to the admins of their tenant" on public.digest_settings
  for select to authenticated using (public.administers_tenant(tenant_id));

-- Functions ---------------------------------------------------------------------------------------

/** The tenant's digest hour and zone as the API shows them (the defaults when it has none). */
create function public.digest_settings_json(p_tenant text) returns jsonb
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
create function public.get_digest_settings(p_tenant text) returns jsonb
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
create function public.set_digest_settings(p_tenant text, p_hour integer, p_time_zone text) returns jsonb
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
create function public.digest_content(p_tenant text, p_owner text, p_since timestamptz, p_until timestamptz)
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
create function public.digest_text(p_digest jsonb, p_locale text) returns text
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
create function public.write_daily_digests(p_now timestamptz default now()) returns jsonb
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
