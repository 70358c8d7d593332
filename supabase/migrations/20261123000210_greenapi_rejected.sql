-- Green-API notifications leadwatch could not read, kept whole (a dead letter). Green-API resends a
-- notification not answered 200 for a day and holds every later one behind it, so an unreadable
-- notification is answered 200 and kept here for an admin to look at, rather than refused.

-- Tables ------------------------------------------------------------------------------------------

create table public.greenapi_rejected (
  id          uuid primary key default public.uuid_v7(),
  tenant_id   text not null,
  instance_id text not null,               -- the Green-API instance whose webhook token came with it
  payload     jsonb,                       -- the notification, when it is JSON PostgreSQL can store
  raw         bytea,                       -- else the body exactly as received
  reason      text not null,               -- why it could not be read
  received_at timestamptz not null default now(),
  constraint greenapi_rejected_payload_or_raw check (num_nonnulls(payload, raw) = 1)
);
create index idx_greenapi_rejected_tenant on public.greenapi_rejected (tenant_id, received_at desc, id desc);

-- Grants ------------------------------------------------------------------------------------------

revoke all on table public.greenapi_rejected from public, anon, authenticated, service_role;
grant select on table public.greenapi_rejected to authenticated, service_role;
grant insert on table public.greenapi_rejected to service_role;
alter table public.greenapi_rejected enable row level security;

-- Policies ----------------------------------------------------------------------------------------

create policy "Rejected notifications are visible to admins and managers of their tenant"
  on public.greenapi_rejected
  for select to authenticated
  using ((select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant()) and (select public.sees_whole_tenant())));

-- Functions ---------------------------------------------------------------------------------------

/**
 * Keep a notification that could not be read: its JSON (`p_payload`), or its body as received
 * (`p_raw`) when it is not JSON PostgreSQL can store. Service only (the webhook).
 */
create function public.reject_greenapi_notification(
  p_tenant      text,
  p_instance_id text,
  p_reason      text,
  p_payload     jsonb default null,
  p_raw         bytea default null
) returns jsonb
language sql
set search_path = ''
as $$
  insert into public.greenapi_rejected (tenant_id, instance_id, reason, payload, raw)
  values (p_tenant, p_instance_id, left(p_reason, 500), p_payload, p_raw)
  returning jsonb_build_object('id', id)
$$;
grant execute on function public.reject_greenapi_notification(text, text, text, jsonb, bytea) to service_role;

/**
 * One page of a tenant's rejected notifications, newest first: to admins and managers of the
 * tenant, platform staff and the service. The raw body (when not JSON) comes base64-encoded.
 */
create function public.list_greenapi_rejected(
  p_tenant text,
  p_limit  integer default 50,
  p_cursor jsonb default null
) returns jsonb
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
    from public.greenapi_rejected r
    where r.tenant_id = p_tenant
      and (p_cursor is null
           or (r.received_at, r.id) < ((p_cursor ->> 'o')::timestamptz, (p_cursor ->> 'i')::uuid))
    order by r.received_at desc, r.id desc
    limit p_limit + 1
  )
  select jsonb_build_object(
    'rejected', coalesce((select jsonb_agg(jsonb_build_object(
                            'id', (p.r).id, 'instance_id', (p.r).instance_id, 'reason', (p.r).reason,
                            'received_at', (p.r).received_at, 'payload', (p.r).payload,
                            'raw_base64', encode((p.r).raw, 'base64')) order by p.n)
                          from page p where p.n <= p_limit), '[]'),
    'next_cursor', (select jsonb_build_object('o', (p.r).received_at, 'i', (p.r).id)
                    from page p where p.n = p_limit and exists (select from page q where q.n > p_limit)))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.list_greenapi_rejected(text, integer, jsonb) to authenticated, service_role;
