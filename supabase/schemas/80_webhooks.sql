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

/**
 * Record claimed deliveries' outcomes [{tenant_id, id, attempt, status, error, final}]: delivered,
 * retried later, or failed (a 410, the last attempt, or `final`: a destination the deliverer refused,
 * lib/leadwatch/egress.py, which retried would be knocked at for a day). The endpoint stays enabled.
 */
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
                when r.status = 410 or coalesce(r.final, false) or public.webhook_retry_delay(r.attempt) is null
                  then 'failed'
                else 'pending' end as next_status
    from jsonb_to_recordset(p_results) as r (tenant_id text, id uuid, attempt integer, status integer, error text,
                                             final boolean)
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
