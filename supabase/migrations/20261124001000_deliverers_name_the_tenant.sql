-- The deliverers name the tenant of every row they record, as every other query does: a claimed
-- webhook delivery carries its tenant_id, the outcome sent back carries it too, and the outcome is
-- recorded through the (tenant_id, id) primary key. The plain indexes on id alone, kept until now
-- for these two lookups, go: under a distributed PostgreSQL sharded by tenant_id they would have
-- asked every shard.

-- Indexes -----------------------------------------------------------------------------------------

drop index public.webhook_deliveries_id;
drop index public.member_pushes_id;

-- Functions ---------------------------------------------------------------------------------------

/** Claim due webhook deliveries (FOR UPDATE SKIP LOCKED) under a lease: [{tenant_id, id, attempt, url, secret, payload}]. */
CREATE OR REPLACE FUNCTION public.claim_webhook_deliveries(p_now timestamp with time zone DEFAULT now(), p_limit integer DEFAULT 100, p_lease_seconds integer DEFAULT 120)
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

/** Record claimed deliveries' outcomes [{tenant_id, id, attempt, status, error}]: delivered, retried later, or failed. */
CREATE OR REPLACE FUNCTION public.record_webhook_attempts(p_results jsonb, p_now timestamp with time zone DEFAULT now())
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
                when r.status = 410 or public.webhook_retry_delay(r.attempt) is null then 'failed'
                else 'pending' end as next_status
    from jsonb_to_recordset(p_results) as r (tenant_id text, id uuid, attempt integer, status integer, error text)
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
