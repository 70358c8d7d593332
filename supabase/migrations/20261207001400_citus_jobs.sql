-- Statements a Citus coordinator can plan too (docs/citus.md), the same behaviour on PostgreSQL:
-- * create_webhook and upsert_member read the JSON list (events, notifications) into a variable
--   before the insert: Citus refuses a subquery in an INSERT's VALUES;
-- * upsert_member, set_digest_settings and claim_email_send set the time on conflict to the insert's
--   own (the column's default, now(): the same value), and claim_email_send compares with a variable
--   taken at the start: Citus refuses a STABLE function in DO UPDATE;
-- * set_activity_status reopens the alerts an activity had resolved naming the tenant (each table of
--   a statement in a delegated function must): the same rows, an activity being the tenant's.

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
  v_events     text[];
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  if jsonb_typeof(p_events) is distinct from 'array' then
    perform public.raise_error('LW422', 'events must be a list of event types', 'events');
  end if;
  v_events := array(select jsonb_array_elements_text(p_events));  -- Citus refuses a subquery in VALUES
  insert into public.webhook_endpoints (tenant_id, url, events, enabled, secret, created_by)
  values (p_tenant, p_url, v_events, p_enabled, p_secret, v_actor)
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
 * Claim an Idempotency-Key before sending: `{claimed: true}` when this request may send;
 * otherwise `{claimed: false, answer}` — the answer of the send the key already made (null while
 * it is under way) — or 422 when the key came with another request. A claim left without an
 * answer for 10 minutes (its sender died) may be claimed again. Service only.
 */
create or replace function public.claim_email_send(p_tenant text, p_key text, p_request_hash text) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_send       public.email_sends;
  v_abandoned  timestamptz := now() - interval '10 minutes';  -- Citus: no STABLE function in DO UPDATE
begin
  perform public.assert_acts_in(p_tenant, '{}');
  insert into public.email_sends as s (tenant_id, idempotency_key, request_hash)
  values (p_tenant, p_key, p_request_hash)
  on conflict (tenant_id, idempotency_key)
    do update set claimed_at = excluded.claimed_at, request_hash = excluded.request_hash  -- its default, now()
    where s.answer is null and s.claimed_at < v_abandoned
  returning * into v_send;
  if found then
    return jsonb_build_object('claimed', true);
  end if;
  select * into v_send from public.email_sends s where s.tenant_id = p_tenant and s.idempotency_key = p_key;
  if v_send.request_hash <> p_request_hash then
    perform public.raise_error('LW422', 'this Idempotency-Key was used for another request', 'Idempotency-Key');
  end if;
  return jsonb_build_object('claimed', false, 'answer', v_send.answer);
end
$$;
grant execute on function public.claim_email_send(text, text, text) to service_role;

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
      where a.tenant_id = p_tenant and a.resolved_by_activity = v_old.id  -- Citus: each table names the tenant
        and not exists (select from public.max_alerts b
                        where b.tenant_id = p_tenant and b.lead_id = a.lead_id and b.type = a.type
                          and b.resolved_at is null)
      returning a.type
    )
    select coalesce(jsonb_agg(r.type order by r.type), '[]') into v_reopened from reopened r;
  end if;
  return jsonb_build_object('found', true, 'activity', public.activity_json(v_new), 'reopened', v_reopened);
end
$$;
grant execute on function public.set_activity_status(text, text, text, text) to service_role;
