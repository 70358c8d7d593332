-- Exports: a tenant's alerts and activities read in pages in a stable order (keyset pagination),
-- so that the CSV exports stream any number of rows in constant memory, through either store.

-- Indexes -----------------------------------------------------------------------------------------

-- A tenant's alerts in creation order (all of them, resolved included), page after page.
create index idx_max_alerts_tenant_created on public.max_alerts (tenant_id, created_at, id);
-- A tenant's activities in the order they happened, page after page.
create index idx_lead_activities_tenant_occurred on public.lead_activities (tenant_id, occurred_at, id);

-- Functions ---------------------------------------------------------------------------------------

/**
 * One page of a tenant's alerts, oldest first: the active ones (`p_state` 'active') or all of them
 * ('all'), with the list's filters (severity, type, lead) and a range on their creation time
 * [`p_from`, `p_to`). `p_cursor` is the `next_cursor` of the previous page (null after the last).
 * Runs as the caller: a user exports what row-level security shows them, as in the lists.
 */
create function public.export_alerts(
  p_tenant   text,
  p_state    text default 'active',
  p_severity text default null,
  p_type     text default null,
  p_lead_id  text default null,
  p_from     timestamptz default null,
  p_to       timestamptz default null,
  p_limit    integer default 1000,
  p_cursor   jsonb default null
) returns jsonb
language plpgsql stable
set search_path = ''
set plan_cache_mode = force_custom_plan  -- plan each page with its real filters and cursor
as $$
declare
  v_result jsonb;
begin
  if p_state not in ('active', 'all') then
    perform public.raise_error('LW422', 'state must be active or all', 'state');
  end if;

  with page as (
    select a.*, l.name as lead_name, l.email as lead_email, l.owner_id,
           row_number() over (order by a.created_at, a.id) as n
    from (
      select a.*
      from public.max_alerts a
      where a.tenant_id = p_tenant
        and (p_state = 'all' or a.resolved_at is null)
        and (p_severity is null or a.severity = p_severity)
        and (p_type is null or a.type = p_type)
        and (p_lead_id is null or a.lead_id = p_lead_id)
        and (p_from is null or a.created_at >= p_from)
        and (p_to is null or a.created_at < p_to)
        and (p_cursor is null
             or (a.created_at, a.id) > ((p_cursor ->> 'c')::timestamptz, (p_cursor ->> 'i')::uuid))
      order by a.created_at, a.id
      limit p_limit + 1
    ) a
    left join public.leads l on l.tenant_id = a.tenant_id and l.lead_id = a.lead_id
  )
  select jsonb_build_object(
    'rows', coalesce((select jsonb_agg(jsonb_build_object(
                        'id', p.id, 'lead_id', p.lead_id, 'lead_name', p.lead_name, 'lead_email', p.lead_email,
                        'owner_id', p.owner_id, 'type', p.type, 'severity', p.severity, 'message', p.message,
                        'action', p.suggested_action ->> 'action', 'created_at', p.created_at,
                        'escalated_at', p.escalated_at, 'resolved_at', p.resolved_at,
                        'resolved_by', p.resolved_by, 'resolution', p.resolution) order by p.n)
                      from page p where p.n <= p_limit), '[]'),
    'next_cursor', (select jsonb_build_object('c', p.created_at, 'i', p.id)
                    from page p where p.n = p_limit and exists (select from page q where q.n > p_limit)))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.export_alerts(text, text, text, text, text, timestamptz, timestamptz, integer, jsonb)
  to authenticated, service_role;

/**
 * One page of a tenant's activities (or one lead's), in the order they happened, within
 * [`p_from`, `p_to`) on `occurred_at`. Runs as the caller, as the timeline does.
 */
create function public.export_activities(
  p_tenant  text,
  p_lead_id text default null,
  p_from    timestamptz default null,
  p_to      timestamptz default null,
  p_limit   integer default 1000,
  p_cursor  jsonb default null
) returns jsonb
language plpgsql stable
set search_path = ''
set plan_cache_mode = force_custom_plan
as $$
declare
  v_result jsonb;
begin
  with page as (
    select a, row_number() over (order by a.occurred_at, a.id) as n
    from public.lead_activities a
    where a.tenant_id = p_tenant
      and (p_lead_id is null or a.lead_id = p_lead_id)
      and (p_from is null or a.occurred_at >= p_from)
      and (p_to is null or a.occurred_at < p_to)
      and (p_cursor is null
           or (a.occurred_at, a.id) > ((p_cursor ->> 'o')::timestamptz, (p_cursor ->> 'i')::uuid))
    order by a.occurred_at, a.id
    limit p_limit + 1
  )
  select jsonb_build_object(
    'rows', coalesce((select jsonb_agg(public.activity_json(p.a) order by p.n) from page p where p.n <= p_limit), '[]'),
    'next_cursor', (select jsonb_build_object('o', (p.a).occurred_at, 'i', (p.a).id)
                    from page p where p.n = p_limit and exists (select from page q where q.n > p_limit)))
  into v_result;
  return v_result;
end
$$;
grant execute on function public.export_activities(text, text, timestamptz, timestamptz, integer, jsonb)
  to authenticated, service_role;
