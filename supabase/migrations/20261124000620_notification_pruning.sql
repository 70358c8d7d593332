-- Pruning the notifications' outbox: webhook deliveries delivered, WhatsApp pushes sent and
-- morning digests written more than 30 days ago are removed by the nightly retention job (one
-- bounded batch per call, as the rest of retention). Failed and pending ones are kept: the
-- delivery log is where an admin finds out why a receiver missed something.

-- Tables ------------------------------------------------------------------------------------------

-- What pruning reads: the oldest delivered deliveries and sent pushes.
create index webhook_deliveries_delivered on public.webhook_deliveries (delivered_at) where status = 'delivered';
create index member_pushes_sent on public.member_pushes (sent_at) where status = 'sent';

-- Functions ---------------------------------------------------------------------------------------

/**
 * Remove, for one tenant or all, at most `p_batch` each of the webhook deliveries delivered, the
 * pushes sent and the digests written more than 30 days before `p_now`; `more`: call again.
 * Service and scheduler only.
 */
create function public.prune_notifications(p_tenant text default null, p_batch integer default 5000,
                                           p_now timestamptz default now())
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_deliveries integer;
  v_pushes     integer;
  v_digests    integer;
begin
  if not public.is_trusted_caller() then
    perform public.raise_error('LW403', 'pruning is run by the service');
  end if;
  if p_batch is null or p_batch not between 1 and 50000 then
    perform public.raise_error('LW422', 'batch must be between 1 and 50000', 'batch');
  end if;
  with doomed as (
    select d.id from public.webhook_deliveries d
    where d.status = 'delivered' and d.delivered_at < p_now - interval '30 days'
      and (p_tenant is null or d.tenant_id = p_tenant)
    limit p_batch
  ),
  removed as (delete from public.webhook_deliveries d using doomed x where d.id = x.id returning 1)
  select count(*) into v_deliveries from removed;

  with doomed as (
    select p.id from public.member_pushes p
    where p.status = 'sent' and p.sent_at < p_now - interval '30 days'
      and (p_tenant is null or p.tenant_id = p_tenant)
    limit p_batch
  ),
  removed as (delete from public.member_pushes p using doomed x where p.id = x.id returning 1)
  select count(*) into v_pushes from removed;

  with doomed as (
    select g.tenant_id, g.user_id, g.day from public.member_digests g
    where g.created_at < p_now - interval '30 days' and (p_tenant is null or g.tenant_id = p_tenant)
    limit p_batch
  ),
  removed as (
    delete from public.member_digests g using doomed x
    where g.tenant_id = x.tenant_id and g.user_id = x.user_id and g.day = x.day
    returning 1
  )
  select count(*) into v_digests from removed;

  return jsonb_build_object('deliveries', v_deliveries, 'pushes', v_pushes, 'digests', v_digests,
                            'more', greatest(v_deliveries, v_pushes, v_digests) = p_batch);
end
$$;
grant execute on function public.prune_notifications(text, integer, timestamptz) to service_role;
