-- A webhook delivery whose destination the deliverer refused (its name now resolves to a loopback,
-- private or other non-public address: lib/leadwatch/egress.py) fails at once. The deliverer sends
-- that outcome back with `final`; retried on the schedule it would knock at the same refused
-- destination for a day. The endpoint stays enabled: its next events are checked again, and an
-- admin can redeliver once the name is fixed. The function as supabase/schemas/80_webhooks.sql has it
-- (the baseline's but for `final`).

-- Functions ---------------------------------------------------------------------------------------

/**
 * Record claimed deliveries' outcomes [{tenant_id, id, attempt, status, error, final}]: delivered,
 * retried later, or failed (a 410, the last attempt, or `final`: a destination refused).
 */
create or replace function public.record_webhook_attempts(p_results jsonb, p_now timestamptz default now())
returns jsonb
language plpgsql
set search_path = ''
as $$
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
$$;
