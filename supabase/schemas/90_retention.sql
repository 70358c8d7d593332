-- Retention: how long each tenant keeps its history, and pruning what notifications delivered.

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Tables ------------------------------------------------------------------------------------------

create table public.retention_policies (
  tenant_id             text not null,  -- '*' holds the default for every tenant without a row of its own
  activities_after      interval,       -- activities that occurred longer ago are removed (null: kept)
  resolved_alerts_after interval,       -- alerts resolved longer ago are removed with their history (null: kept)
  constraint retention_policies_pkey primary key (tenant_id),
  -- HotLead24h reads the last 24 h of activities: keep at least two days.
  constraint retention_policies_activities_two_days check (activities_after >= interval '2 days'),
  constraint retention_policies_alerts_positive check (resolved_alerts_after > interval '0')
);

-- Grants and row-level security -------------------------------------------------------------------

grant select on table public.retention_policies to authenticated;
grant select, insert, update, delete on table public.retention_policies to service_role;

alter table public.retention_policies enable row level security;

-- Policies ----------------------------------------------------------------------------------------

create policy "Retention policies are visible to the staff of their tenant, and the default to all" on public.retention_policies
  for select to authenticated
  using (tenant_id = '*' or (select public.sees_all_tenants())
         or (tenant_id = (select public.current_tenant()) and (select public.sees_whole_tenant())));

-- Functions ---------------------------------------------------------------------------------------

/**
 * Remove, for one tenant or all, at most `p_batch` activities and `p_batch` resolved alerts (with
 * their history) that are past their tenant's retention ages, and answer how many rows went and
 * whether more remain (`more`: call again). Never removes what the rules still need: the lead's
 * state keeps the times the time-based rules read; each lead keeps its last 5 inbound and last 2
 * outbound (what PreferredChannel reads); a resolved alert is kept while its lead's silence lasts
 * (what stops it being raised again). Service and scheduler only.
 */
create or replace function public.apply_retention(p_tenant text DEFAULT NULL::text, p_batch integer DEFAULT 5000, p_now timestamp with time zone DEFAULT now())
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  v_activities integer;
  v_alerts     integer;
  v_events     integer;
begin
  if not public.is_trusted_caller() then
    perform public.raise_error('LW403', 'retention is run by the service');
  end if;
  if p_batch is null or p_batch not between 1 and 50000 then
    perform public.raise_error('LW422', 'batch must be between 1 and 50000', 'batch');
  end if;
  perform set_config('leadwatch.history_maintenance', 'on', true);

  -- Activities, by when they occurred (no order: the scan stops at the batch's last row).
  with doomed as (
    select a.tenant_id, a.id
    from public.lead_activities a
    cross join lateral (select r.activities_after from public.retention_policies r
                        where r.tenant_id in (a.tenant_id, '*')
                        order by r.tenant_id = '*' limit 1) r
    where a.occurred_at < p_now - r.activities_after
      and (p_tenant is null or a.tenant_id = p_tenant)
      and (select count(*)
           from (select from public.lead_activities y
                 where y.tenant_id = a.tenant_id and y.lead_id = a.lead_id and y.direction = a.direction
                   and public.counts_as_contact(y.status) and (y.occurred_at, y.id) > (a.occurred_at, a.id)
                 limit case a.direction when 'in' then 5 else 2 end) newer)
          = case a.direction when 'in' then 5 else 2 end
    limit p_batch
  ),
  removed as (
    delete from public.lead_activities a using doomed d where a.tenant_id = d.tenant_id and a.id = d.id returning 1
  )
  select count(*) into v_activities from removed;

  -- Resolved alerts and their history.
  with doomed as (
    select a.id, a.tenant_id, a.lead_id
    from public.max_alerts a
    cross join lateral (select r.resolved_alerts_after from public.retention_policies r
                        where r.tenant_id in (a.tenant_id, '*')
                        order by r.tenant_id = '*' limit 1) r
    where a.resolved_at < p_now - r.resolved_alerts_after
      and (p_tenant is null or a.tenant_id = p_tenant)
      and (a.cycle_started_at is null
           or exists (select from public.lead_state s
                      where s.tenant_id = a.tenant_id and s.lead_id = a.lead_id
                        and s.last_activity_at > a.cycle_started_at))
    limit p_batch
  ),
  events as (
    delete from public.alert_events e using doomed d
    where e.tenant_id = d.tenant_id and e.lead_id = d.lead_id and e.alert_id = d.id
    returning 1
  ),
  alerts as (
    delete from public.max_alerts a using doomed d where a.tenant_id = d.tenant_id and a.id = d.id returning 1
  )
  select (select count(*) from alerts), (select count(*) from events) into v_alerts, v_events;

  return jsonb_build_object('activities', v_activities, 'alerts', v_alerts, 'events', v_events,
                            'more', v_activities = p_batch or v_alerts = p_batch);
end
$function$
;
grant execute on function public.apply_retention(text, integer, timestamptz) to service_role;

/**
 * Remove, for one tenant or all, at most `p_batch` each of the webhook deliveries delivered, the
 * pushes sent and the digests written more than 30 days before `p_now`; `more`: call again.
 * Service and scheduler only.
 */
create or replace function public.prune_notifications(p_tenant text default null, p_batch integer default 5000,
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
