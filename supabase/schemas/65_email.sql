-- Email: inbound messages matched to leads by address (automatic replies stored but not counted as
-- replies, bounces turning the send they report into a failed one, messages that cannot be read kept
-- whole), the From address per tenant, and the Idempotency-Key of sends, so that a retried request
-- does not send twice.

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Tables ------------------------------------------------------------------------------------------

-- The address a tenant's emails come from; a tenant without a row sends from LEADWATCH_EMAIL_FROM.
create table public.email_senders (
  tenant_id    text not null,
  from_address text not null,              -- an RFC 5322 address, e.g. 'Acme Sales <sales@acme.example>'
  updated_at   timestamptz not null default now(),
  constraint email_senders_pkey primary key (tenant_id),
  constraint email_senders_from_has_address check (from_address ~ '@' and length(from_address) <= 320)
);

-- Inbound emails leadwatch could not read (or over the size limit), kept as received.
create table public.email_rejected (
  id          uuid not null default public.uuid_v7(),
  tenant_id   text not null,
  raw         bytea not null,              -- the message as received (cut at the size limit when over it)
  reason      text not null,               -- why it could not be read
  received_at timestamptz not null default now(),
  constraint email_rejected_pkey primary key (tenant_id, id)
);
create index idx_email_rejected_tenant on public.email_rejected (tenant_id, received_at desc, id desc);

-- One row per Idempotency-Key a send came with: the answer of the send it made, replayed to a retry.
create table public.email_sends (
  tenant_id       text not null,
  idempotency_key text not null,
  request_hash    text not null,           -- what was asked (lead, alert, subject, text): a key reused for
                                           -- another request is refused
  claimed_at      timestamptz not null default now(),
  answer          jsonb,                   -- null while the send is under way
  constraint email_sends_pkey primary key (tenant_id, idempotency_key)
);

-- Grants and row-level security -------------------------------------------------------------------

revoke all on table public.email_senders, public.email_rejected, public.email_sends
  from public, anon, authenticated, service_role;
grant select on table public.email_senders to authenticated, service_role;
grant insert, update, delete on table public.email_senders to service_role;
grant select on table public.email_rejected to authenticated, service_role;
grant insert on table public.email_rejected to service_role;
grant select, insert, update, delete on table public.email_sends to service_role;
alter table public.email_senders enable row level security;
alter table public.email_rejected enable row level security;
alter table public.email_sends enable row level security;

-- Policies ----------------------------------------------------------------------------------------

create policy "Email senders are visible to admins and managers of their tenant"
  on public.email_senders
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant()) and (select public.sees_whole_tenant())));

create policy "Rejected emails are visible to admins and managers of their tenant"
  on public.email_rejected
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant()) and (select public.sees_whole_tenant())));

-- Functions ---------------------------------------------------------------------------------------

/**
 * Log an email of the lead whose address it came from (case-insensitive; the oldest real lead of
 * the tenant with that address when several share it). An unknown address becomes a provisional
 * lead named after the sender, unless `p_create` is false: then nothing is written and
 * `{unknown_email: true}` is answered (the caller may look the address up in the CRM first).
 * Idempotent on `p_external_id` (the Message-ID). Service only (the email webhook).
 */
create or replace function public.log_activity_by_email(
  p_tenant          text,
  p_email           text,
  p_direction       text default 'in',
  p_sender_name     text default null,
  p_status          text default 'received',
  p_message_snippet text default null,
  p_meta            jsonb default null,
  p_occurred_at     timestamptz default null,
  p_external_id     text default null,
  p_create          boolean default true
) returns jsonb
language plpgsql
security definer  -- may add a provisional lead
set search_path = ''
as $$
declare
  v_lead public.leads;
  v_id   text := 'email:' || lower(p_email);
begin
  perform public.assert_acts_in(p_tenant, '{}');
  if p_email is null or p_email !~ '^[^@\s]+@[^@\s]+$' then
    perform public.raise_error('LW422', 'the sender has no email address', 'from');
  end if;
  select * into v_lead from public.leads l
  where l.tenant_id = p_tenant and l.email is not null and lower(l.email) = lower(p_email)
  order by l.provisional, l.created_at, l.lead_id
  limit 1;
  if not found then
    if not p_create then
      return jsonb_build_object('unknown_email', true);
    end if;
    insert into public.leads (tenant_id, lead_id, name, email, provisional)
    values (p_tenant, v_id, p_sender_name, p_email, true)
    on conflict do nothing;
    select * into v_lead from public.leads l where l.tenant_id = p_tenant and l.lead_id = v_id;
  end if;
  return public.log_activity(p_tenant, v_lead.lead_id, 'email', p_direction, p_status, p_message_snippet,
                             p_meta, p_occurred_at, p_external_id)
         || jsonb_build_object('lead', public.lead_json(v_lead));
end
$$;
grant execute on function public.log_activity_by_email(text, text, text, text, text, text, jsonb, timestamptz,
                                                       text, boolean) to service_role;

/**
 * What an email the chat assistant sends needs (POST /api/email/send): the lead, with its address,
 * and the tenant's From address (null: the deployment's default). An alert's email is prepared by
 * `prepare_action`, as every action's follow-up. Runs as the caller: a lead they may not see is not
 * found.
 */
create or replace function public.prepare_email(p_tenant text, p_lead_id text)
returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_lead public.leads;
begin
  perform public.assert_acts_in(p_tenant);
  select * into v_lead from public.leads l where l.tenant_id = p_tenant and l.lead_id = p_lead_id;
  if not found then
    perform public.raise_error('LW404', 'lead not found in the directory', 'leadId');
  end if;
  if v_lead.email is null then
    perform public.raise_error('LW422', 'the lead has no email address', 'email');
  end if;
  return jsonb_build_object(
    'lead', public.lead_json(v_lead),
    'from', (select s.from_address from public.email_senders s where s.tenant_id = p_tenant));
end
$$;
grant execute on function public.prepare_email(text, text) to authenticated, service_role;

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
 * Settle a claimed Idempotency-Key: keep the send's answer for the retries (`p_answer`), or, when
 * nothing was sent (`p_answer` null: the server refused it), release the key so that a retry may
 * send. Service only.
 */
create or replace function public.settle_email_send(p_tenant text, p_key text, p_answer jsonb default null) returns jsonb
language plpgsql
set search_path = ''
as $$
begin
  perform public.assert_acts_in(p_tenant, '{}');
  if p_answer is null then
    delete from public.email_sends s where s.tenant_id = p_tenant and s.idempotency_key = p_key and s.answer is null;
  else
    update public.email_sends s set answer = p_answer where s.tenant_id = p_tenant and s.idempotency_key = p_key;
  end if;
  return jsonb_build_object('settled', true);
end
$$;
grant execute on function public.settle_email_send(text, text, jsonb) to service_role;

/** Keep an inbound email that could not be read, as received. Service only (the webhook). */
create or replace function public.reject_email(p_tenant text, p_reason text, p_raw bytea) returns jsonb
language sql
set search_path = ''
as $$
  insert into public.email_rejected (tenant_id, reason, raw)
  values (p_tenant, left(p_reason, 500), p_raw)
  returning jsonb_build_object('id', id)
$$;
grant execute on function public.reject_email(text, text, bytea) to service_role;

/**
 * One page of a tenant's rejected emails, newest first, each message base64-encoded: to admins and
 * managers of the tenant, platform staff and the service.
 */
create or replace function public.list_email_rejected(p_tenant text, p_limit integer default 50, p_cursor jsonb default null)
returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_result jsonb;
begin
  perform public.assert_acts_in(p_tenant, array['admin', 'manager']);
  perform public.check_page(p_limit, p_cursor, array['o', 'i']);
  with page as (
    select r, row_number() over (order by r.received_at desc, r.id desc) as n
    from public.email_rejected r
    where r.tenant_id = p_tenant
      and (p_cursor is null
           or (r.received_at, r.id) < ((p_cursor ->> 'o')::timestamptz, (p_cursor ->> 'i')::uuid))
    order by r.received_at desc, r.id desc
    limit p_limit + 1
  )
  select jsonb_build_object(
    'rejected', coalesce((select jsonb_agg(jsonb_build_object(
                            'id', (p.r).id, 'reason', (p.r).reason, 'received_at', (p.r).received_at,
                            'raw_base64', encode((p.r).raw, 'base64')) order by p.n)
                          from page p where p.n <= p_limit), '[]'),
    'next_cursor', (select jsonb_build_object('o', (p.r).received_at, 'i', (p.r).id)
                    from page p where p.n = p_limit and exists (select from page q where q.n > p_limit)))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.list_email_rejected(text, integer, jsonb) to authenticated, service_role;
