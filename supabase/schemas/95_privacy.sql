-- Privacy: a lead's personal data on request. The right to erasure (GDPR article 17): an admin
-- erases a lead in one transaction, everywhere leadwatch holds it, leaving a proof without the data
-- (lead_erasures) and a `lead.erased` webhook event; access and portability (articles 15 and 20):
-- everything held about a lead, as one JSON document.
-- Erasing is the one documented exception, with merge and retention, to alert_events being
-- append-only: like them it sets `leadwatch.history_maintenance` for its own statement only, so
-- refuse_history_change() is unchanged.

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Tables ------------------------------------------------------------------------------------------

create table public.lead_erasures (
  id           uuid not null default public.uuid_v7(),
  tenant_id    text not null,
  lead_hash    text not null,   -- sha256 of tenant_id || ':' || lead_id, hex: names the lead to whoever knows its id
  requested_by text not null,   -- the admin's user id, or 'service' / 'user_manual' (dev)
  erased_at    timestamptz not null default now(),
  counts       jsonb not null,  -- rows removed per table, e.g. {"lead_activities": 12, ...}
  constraint lead_erasures_pkey primary key (tenant_id, id),
  constraint lead_erasures_hash_is_sha256 check (lead_hash ~ '^[0-9a-f]{64}$')
);
-- A tenant's erasures, newest first.
create index lead_erasures_tenant_recent on public.lead_erasures (tenant_id, erased_at desc, id desc);

-- Grants and row-level security -------------------------------------------------------------------

-- Users read through row-level security; only erase_lead (as the owner) writes.
revoke all on table public.lead_erasures from public, anon, authenticated, service_role;
grant select on table public.lead_erasures to authenticated, service_role;
alter table public.lead_erasures enable row level security;

-- Policies ----------------------------------------------------------------------------------------

create policy "Erasure records are visible to the admins of their tenant" on public.lead_erasures
  for select to authenticated using (public.administers_tenant(tenant_id));

-- Functions ---------------------------------------------------------------------------------------

/** The one-way hash an erasure keeps of a lead: sha256 of `tenant:lead id`, hex (a tenant holds no ':'). */
create or replace function public.lead_hash(p_tenant text, p_lead_id text) returns text
language sql immutable
set search_path = ''
as $$
  select encode(pg_catalog.sha256(convert_to(p_tenant || ':' || p_lead_id, 'UTF8')), 'hex')
$$;
grant execute on function public.lead_hash(text, text) to authenticated, service_role;

/** An erasure record as the API shows it. */
create or replace function public.lead_erasure_json(p_erasure public.lead_erasures) returns jsonb
language sql immutable
as $$
  select jsonb_build_object('id', p_erasure.id, 'lead_hash', p_erasure.lead_hash,
                            'requested_by', p_erasure.requested_by, 'erased_at', p_erasure.erased_at,
                            'counts', p_erasure.counts)
$$;
grant execute on function public.lead_erasure_json(public.lead_erasures) to authenticated, service_role;

/** Stop unless `p_lead_id` can be a lead id (1 to 200 characters): 422 naming leadId. */
create or replace function public.check_lead_id(p_lead_id text) returns void
language plpgsql
set search_path = ''
as $$
begin
  if p_lead_id is null or char_length(p_lead_id) not between 1 and 200 then
    perform public.raise_error('LW422', 'leadId must be 1 to 200 characters', 'leadId');
  end if;
end
$$;
grant execute on function public.check_lead_id(text) to authenticated, service_role;

/**
 * The WhatsApp numbers (E.164 digits, no '+') under which a lead may have written to the tenant:
 * its directory phone and the chats of its WhatsApp activities. What finds its dead letters.
 */
create or replace function public.lead_phone_digits(p_tenant text, p_lead_id text) returns text[]
language sql stable
set search_path = ''
as $$
  select coalesce(array_agg(distinct d.digits) filter (where d.digits ~ '^[1-9][0-9]{6,14}$'), '{}')
  from (select ltrim(l.phone, '+') as digits
        from public.leads l where l.tenant_id = p_tenant and l.lead_id = p_lead_id
        union all
        select substring(a.external_id from '^([0-9]+)@c\.us/')
        from public.lead_activities a
        where a.tenant_id = p_tenant and a.lead_id = p_lead_id and a.channel = 'whatsapp') d
$$;
grant execute on function public.lead_phone_digits(text, text) to authenticated, service_role;

/** Does this dead letter (its JSON, or its raw body) carry one of these numbers? */
create or replace function public.names_phone(p_payload jsonb, p_raw bytea, p_digits text[]) returns boolean
language sql immutable
set search_path = ''
as $$
  select exists (select from unnest(p_digits) d
                 where coalesce(p_payload::text, encode(p_raw, 'escape')) ~ ('(^|[^0-9])' || d || '([^0-9]|$)'))
$$;
grant execute on function public.names_phone(jsonb, bytea, text[]) to authenticated, service_role;

/**
 * The email addresses, lowercased, under which a lead may have written to the tenant or been
 * written to: its directory address and, for a lead made from an unknown sender, the address in
 * its id (`email:<address>`). What finds its rejected emails and its sends.
 */
create or replace function public.lead_email_addresses(p_tenant text, p_lead_id text) returns text[]
language sql stable
set search_path = ''
as $$
  select coalesce(array_agg(distinct a.address) filter (where a.address ~ '^[^@\s]+@[^@\s]+$'), '{}')
  from (select lower(l.email) as address
        from public.leads l where l.tenant_id = p_tenant and l.lead_id = p_lead_id
        union all
        select lower(substring(p_lead_id from '^email:(.+)$'))) a
$$;
grant execute on function public.lead_email_addresses(text, text) to authenticated, service_role;

/**
 * Does this raw message carry one of these addresses (case-insensitive, as a whole address: not
 * inside a longer one, e.g. `xzoe@…` or `…@example.org.uk`)? What finds a lead's rejected emails.
 */
create or replace function public.names_email(p_raw bytea, p_addresses text[]) returns boolean
language sql immutable
set search_path = ''
as $$
  select exists (select from unnest(p_addresses) a
                 where encode(p_raw, 'escape')
                       ~* ('(^|[^a-z0-9.!#$%&''*+/=?^_`{|}~-])'
                           || regexp_replace(a, '([.+*?^$()\[\]{}|\\-])', '\\\1', 'g')
                           || '($|[^a-z0-9.-]|\.($|[^a-z0-9-]))'))
$$;
grant execute on function public.names_email(bytea, text[]) to authenticated, service_role;

/**
 * Does this kept send's answer concern the lead: sent to one of its addresses, or naming it (its
 * activity, its alerts)? What finds a lead's sends among the Idempotency-Key records.
 */
create or replace function public.is_send_to(p_answer jsonb, p_lead_id text, p_addresses text[]) returns boolean
language sql immutable
set search_path = ''
as $$
  select p_answer is not null
         and (lower(p_answer #>> '{sent,to}') = any (p_addresses) or public.names_lead(p_answer, p_lead_id))
$$;
grant execute on function public.is_send_to(jsonb, text, text[]) to authenticated, service_role;

/**
 * The lead's sends kept for their Idempotency-Key (key, when, the answer replayed to a retry: the
 * address, subject and message sent), oldest first: for its export. Admins of the tenant, platform
 * staff and the service; no API role reads email_sends itself.
 */
create or replace function public.list_lead_email_sends(p_tenant text, p_lead_id text) returns jsonb
language plpgsql stable
security definer  -- email_sends is the service's alone
set search_path = ''
as $$
declare
  v_addresses text[];
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  v_addresses := public.lead_email_addresses(p_tenant, p_lead_id);
  return coalesce(
    (select jsonb_agg(jsonb_build_object('idempotency_key', s.idempotency_key, 'claimed_at', s.claimed_at,
                                         'answer', s.answer) order by s.claimed_at, s.idempotency_key)
     from public.email_sends s
     where s.tenant_id = p_tenant and public.is_send_to(s.answer, p_lead_id, v_addresses)),
    '[]');
end
$$;
revoke all on function public.list_lead_email_sends(text, text) from public, anon, authenticated, service_role;
grant execute on function public.list_lead_email_sends(text, text) to authenticated, service_role;

/**
 * Does a webhook payload or digest name this lead (an object anywhere in it whose `lead_id` is
 * this id)? Alert events carry the alert (`data.alert.lead_id`), digests their first alerts.
 */
create or replace function public.names_lead(p_document jsonb, p_lead_id text) returns boolean
language sql immutable
set search_path = ''
as $$
  select coalesce(jsonb_path_exists(p_document, '$.** ? (@.lead_id == $id)', jsonb_build_object('id', p_lead_id)),
                  false)
$$;
grant execute on function public.names_lead(jsonb, text) to authenticated, service_role;

/**
 * Erase a lead (admins of the tenant, platform staff, the service), in one transaction: its
 * directory row, state, activities, alerts and their history (the counts follow the alerts, the
 * analytics' summaries of the days it touched are dropped and made again from what remains on the
 * next read), the webhook deliveries and WhatsApp pushes that name it (pending or past), its
 * entries in the morning digests kept, the Green-API dead letters from its phone, the rejected
 * emails that carry its address and the sends to it kept for their Idempotency-Key. Records the
 * erasure (the lead's hash, who, when, how many rows of each kind) and queues a `lead.erased`
 * delivery, carrying only that hash, to every webhook endpoint of the tenant: each may have
 * received the lead's data. A later activity for the same id starts a new lead with no past.
 * A lead the tenant holds nothing about (never known, or already erased) is a 404.
 */
create or replace function public.erase_lead(p_tenant text, p_lead_id text, p_actor text default 'user_manual')
returns jsonb
language plpgsql
security definer  -- deletes what no API role may delete (history, the outbox, dead letters)
set search_path = ''
as $$
declare
  v_actor     text := case when public.is_trusted_caller() then coalesce(p_actor, 'service')
                           else (select auth.jwt()) ->> 'sub' end;
  v_lead      public.leads;
  v_digits    text[];
  v_addresses text[];
  v_label     text;
  v_events    bigint[];
  v_moments   timestamptz[];
  v_summaries integer;
  v_counts    jsonb := '{}'::jsonb;
  v_n         integer;
  v_erasure   public.lead_erasures;
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  perform public.check_lead_id(p_lead_id);
  -- Hold the lead while it goes: an activity arriving now waits, then starts a new lead.
  select * into v_lead from public.leads l where l.tenant_id = p_tenant and l.lead_id = p_lead_id for update;
  perform from public.lead_state s where s.tenant_id = p_tenant and s.lead_id = p_lead_id for update;
  if v_lead.lead_id is null
     and not exists (select from public.lead_state s where s.tenant_id = p_tenant and s.lead_id = p_lead_id)
     and not exists (select from public.lead_activities a where a.tenant_id = p_tenant and a.lead_id = p_lead_id)
     and not exists (select from public.max_alerts a where a.tenant_id = p_tenant and a.lead_id = p_lead_id) then
    perform public.raise_error('LW404', 'lead not found', 'leadId');
  end if;

  v_digits := public.lead_phone_digits(p_tenant, p_lead_id);
  v_addresses := public.lead_email_addresses(p_tenant, p_lead_id);
  v_label := coalesce(v_lead.name, p_lead_id);  -- how pushes name the lead
  select coalesce(array_agg(a.created_at) || array_agg(a.resolved_at) filter (where a.resolved_at is not null), '{}')
  into v_moments
  from public.max_alerts a where a.tenant_id = p_tenant and a.lead_id = p_lead_id;
  select coalesce(array_agg(e.id), '{}') into v_events
  from public.alert_events e where e.tenant_id = p_tenant and e.lead_id = p_lead_id;
  select count(*) into v_summaries from public.alert_day_rollups r where r.tenant_id = p_tenant;

  -- The outbox: deliveries and pushes that name the lead, whatever their status.
  delete from public.webhook_deliveries d
  where d.tenant_id = p_tenant and (d.event_id = any (v_events) or public.names_lead(d.payload, p_lead_id));
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('webhook_deliveries', v_n);

  delete from public.member_pushes p
  where p.tenant_id = p_tenant
    and (p.event_id = any (v_events)
         or (p.kind = 'digest'  -- written in the statement that wrote its digest: same member, same moment
             and exists (select from public.member_digests g
                         where g.tenant_id = p.tenant_id and g.user_id = p.user_id and g.created_at = p.created_at
                           and public.names_lead(g.digest, p_lead_id)))
         or position('sur ' || v_label || ' — ' in p.text) > 0    -- high alert, overdue (fr)
         or position('on ' || v_label || ' — ' in p.text) > 0     -- (en)
         or position(' — ' || v_label || ' : ' in p.text) > 0     -- a digest's line (fr)
         or position(' — ' || v_label || ': ' in p.text) > 0);    -- (en)
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('member_pushes', v_n);

  -- A digest row stays (it keeps the member's day from being written twice), without the lead.
  update public.member_digests g
  set digest = jsonb_set(g.digest, '{first}', coalesce(
        (select jsonb_agg(f.item order by f.n)
         from jsonb_array_elements(g.digest -> 'first') with ordinality f(item, n)
         where not public.names_lead(f.item, p_lead_id)), '[]'))
  where g.tenant_id = p_tenant and public.names_lead(g.digest, p_lead_id);
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('member_digests', v_n);

  delete from public.greenapi_rejected r
  where r.tenant_id = p_tenant and cardinality(v_digits) > 0 and public.names_phone(r.payload, r.raw, v_digits);
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('greenapi_rejected', v_n);

  delete from public.email_rejected r
  where r.tenant_id = p_tenant and cardinality(v_addresses) > 0 and public.names_email(r.raw, v_addresses);
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('email_rejected', v_n);

  delete from public.email_sends s
  where s.tenant_id = p_tenant and public.is_send_to(s.answer, p_lead_id, v_addresses);
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('email_sends', v_n);

  -- History and alerts. Deleting events drops the summaries of their days (a trigger); the days
  -- the alerts were created or resolved on are dropped here. The counts follow the alerts (a trigger).
  perform set_config('leadwatch.history_maintenance', 'on', true);
  delete from public.alert_events e where e.tenant_id = p_tenant and e.lead_id = p_lead_id;
  get diagnostics v_n = row_count;
  perform set_config('leadwatch.history_maintenance', 'off', true);
  v_counts := v_counts || jsonb_build_object('alert_events', v_n);

  if cardinality(v_moments) > 0 then
    perform public.forget_alert_rollups(p_tenant, v_moments);
  end if;
  v_counts := v_counts || jsonb_build_object(
    'alert_counts', (select count(*) from public.max_alerts a
                     where a.tenant_id = p_tenant and a.lead_id = p_lead_id and a.resolved_at is null));
  delete from public.max_alerts a where a.tenant_id = p_tenant and a.lead_id = p_lead_id;
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('max_alerts', v_n);

  delete from public.lead_activities a where a.tenant_id = p_tenant and a.lead_id = p_lead_id;
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('lead_activities', v_n);

  delete from public.lead_state s where s.tenant_id = p_tenant and s.lead_id = p_lead_id;
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('lead_state', v_n);

  delete from public.leads l where l.tenant_id = p_tenant and l.lead_id = p_lead_id;
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('leads', v_n);

  v_counts := v_counts || jsonb_build_object(
    'alert_day_rollups', v_summaries - (select count(*) from public.alert_day_rollups r where r.tenant_id = p_tenant));

  -- The proof, and the word to the tenant's receivers.
  insert into public.lead_erasures (tenant_id, lead_hash, requested_by, counts)
  values (p_tenant, public.lead_hash(p_tenant, p_lead_id), coalesce(v_actor, 'unknown'), v_counts)
  returning * into v_erasure;
  insert into public.webhook_deliveries (tenant_id, endpoint_id, event_type, payload, next_attempt_at)
  select p_tenant, w.id, 'lead.erased',
         jsonb_build_object('type', 'lead.erased', 'timestamp', v_erasure.erased_at,
                            'data', jsonb_build_object('erasure', jsonb_build_object(
                              'id', v_erasure.id, 'lead_hash', v_erasure.lead_hash,
                              'erased_at', v_erasure.erased_at))),
         v_erasure.erased_at
  from public.webhook_endpoints w
  where w.tenant_id = p_tenant;

  return jsonb_build_object('erasure', public.lead_erasure_json(v_erasure));
end
$$;
revoke all on function public.erase_lead(text, text, text) from public, anon, authenticated, service_role;
grant execute on function public.erase_lead(text, text, text) to authenticated, service_role;

/** One page of the tenant's erasures, newest first (admins, platform staff, the service). */
create or replace function public.list_lead_erasures(p_tenant text, p_limit integer default 50, p_cursor jsonb default null)
returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_result jsonb;
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  perform public.check_page(p_limit, p_cursor, array['o', 'i']);
  with page as (
    select r, row_number() over (order by r.erased_at desc, r.id desc) as n
    from public.lead_erasures r
    where r.tenant_id = p_tenant
      and (p_cursor is null
           or (r.erased_at, r.id) < ((p_cursor ->> 'o')::timestamptz, (p_cursor ->> 'i')::uuid))
    order by r.erased_at desc, r.id desc
    limit p_limit + 1
  )
  select jsonb_build_object(
    'erasures', coalesce((select jsonb_agg(public.lead_erasure_json(p.r) order by p.n)
                          from page p where p.n <= p_limit), '[]'),
    'next_cursor', (select jsonb_build_object('o', (p.r).erased_at, 'i', (p.r).id)
                    from page p where p.n = p_limit and exists (select from page q where q.n > p_limit)))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.list_lead_erasures(text, integer, jsonb) to authenticated, service_role;

/**
 * Everything leadwatch holds about a lead, as one JSON document (admins, platform staff, the
 * service): its directory row, state, activities (oldest first), alerts (oldest first) each with
 * its history, the Green-API dead letters from its phone, the rejected emails that carry its
 * address, and the sends to it kept for their Idempotency-Key. Reads as the caller (row-level
 * security applies; the sends through list_lead_email_sends). A lead the tenant holds nothing
 * about is a 404.
 */
create or replace function public.export_lead(p_tenant text, p_lead_id text) returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_lead      public.leads;
  v_state     public.lead_state;
  v_digits    text[];
  v_addresses text[];
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  perform public.check_lead_id(p_lead_id);
  select * into v_lead from public.leads l where l.tenant_id = p_tenant and l.lead_id = p_lead_id;
  select * into v_state from public.lead_state s where s.tenant_id = p_tenant and s.lead_id = p_lead_id;
  if v_lead.lead_id is null and v_state.lead_id is null
     and not exists (select from public.lead_activities a where a.tenant_id = p_tenant and a.lead_id = p_lead_id)
     and not exists (select from public.max_alerts a where a.tenant_id = p_tenant and a.lead_id = p_lead_id) then
    perform public.raise_error('LW404', 'lead not found', 'leadId');
  end if;
  v_digits := public.lead_phone_digits(p_tenant, p_lead_id);
  v_addresses := public.lead_email_addresses(p_tenant, p_lead_id);
  return jsonb_build_object(
    'tenant_id', p_tenant,
    'lead_id', p_lead_id,
    'exported_at', now(),
    'lead', case when v_lead.lead_id is not null then public.lead_json(v_lead) end,
    'state', case when v_state.lead_id is not null then to_jsonb(v_state) - 'tenant_id' end,
    'activities', coalesce(
      (select jsonb_agg(public.activity_json(a) order by a.occurred_at, a.id)
       from public.lead_activities a where a.tenant_id = p_tenant and a.lead_id = p_lead_id), '[]'),
    'alerts', coalesce(
      (select jsonb_agg(public.alert_json(a, v_lead.name, v_lead.email)
                        || jsonb_build_object(
                             'events', coalesce(
                               (select jsonb_agg(jsonb_build_object('event', e.event, 'severity', e.severity,
                                                                    'actor', e.actor, 'at', e.at) order by e.id)
                                from public.alert_events e
                                where e.tenant_id = p_tenant and e.lead_id = p_lead_id and e.alert_id = a.id), '[]'))
                        order by a.created_at, a.id)
       from public.max_alerts a where a.tenant_id = p_tenant and a.lead_id = p_lead_id), '[]'),
    'greenapi_rejected', coalesce(
      (select jsonb_agg(jsonb_build_object('id', r.id, 'instance_id', r.instance_id, 'reason', r.reason,
                                           'received_at', r.received_at, 'payload', r.payload,
                                           'raw_base64', encode(r.raw, 'base64')) order by r.received_at, r.id)
       from public.greenapi_rejected r
       where r.tenant_id = p_tenant and cardinality(v_digits) > 0 and public.names_phone(r.payload, r.raw, v_digits)),
      '[]'),
    'email_rejected', coalesce(
      (select jsonb_agg(jsonb_build_object('id', r.id, 'reason', r.reason, 'received_at', r.received_at,
                                           'raw_base64', encode(r.raw, 'base64')) order by r.received_at, r.id)
       from public.email_rejected r
       where r.tenant_id = p_tenant and cardinality(v_addresses) > 0 and public.names_email(r.raw, v_addresses)),
      '[]'),
    'email_sends', public.list_lead_email_sends(p_tenant, p_lead_id));
end
$$;
grant execute on function public.export_lead(text, text) to authenticated, service_role;
