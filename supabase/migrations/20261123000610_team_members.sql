-- The team directory: who works in a tenant (the JWT `sub`), how to reach them on WhatsApp, in
-- which language and time zone, and which notifications they want — what owner pushes, overdue
-- escalations and the morning digest will read.

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

-- Grants and row-level security -------------------------------------------------------------------

revoke all on table public.team_members from public, anon, authenticated, service_role;
grant select on table public.team_members to authenticated;
grant select, insert, update, delete on table public.team_members to service_role;
alter table public.team_members enable row level security;

-- Policies ----------------------------------------------------------------------------------------

create policy "Team members are visible to the staff of their tenant and to themselves" on public.team_members
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant())
             and ((select public.sees_whole_tenant()) or user_id = (select auth.jwt()) ->> 'sub')));

-- Functions ---------------------------------------------------------------------------------------

/** A member as the API shows them. */
create function public.member_json(p_member public.team_members) returns jsonb
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
create function public.upsert_member(p_tenant text, p_member jsonb) returns jsonb
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
    perform public.raise_error('LW422', 'the member has an invalid ' || coalesce(split_part(v_constraint, '_', 3), 'field'),
                               coalesce(nullif(split_part(v_constraint, '_', 3), ''), 'body'));
end
$$;
grant execute on function public.upsert_member(text, jsonb) to authenticated, service_role;

/** The tenant's directory, by name (admins). */
create function public.list_members(p_tenant text) returns jsonb
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
