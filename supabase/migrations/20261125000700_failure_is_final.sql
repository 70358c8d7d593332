-- A failed send stays failed. Green-API's statuses rank sent < delivered < read < a failure, and
-- all the failures rank alike: a send reported failed (noAccount, notInGroup) could then be
-- reported yellowCard, which counts as contact, and the send counted again without its lead's
-- state being rebuilt (its silence and its reply rules kept the failure's verdict). A status
-- after one that does not count as contact is now acknowledged and ignored, like one that would
-- move backwards. The other way round (yellowCard, then failed) is a move to a failure, handled
-- as before: the lead's state is rebuilt and what the send resolved is reopened. The body is
-- 20261124000300_tenant_leading_keys.sql's but for that one test.

-- Functions ---------------------------------------------------------------------------------------

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
  v_reopened jsonb := '[]';
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
      where a.resolved_by_activity = v_old.id
        and not exists (select from public.max_alerts b
                        where b.tenant_id = a.tenant_id and b.lead_id = a.lead_id and b.type = a.type
                          and b.resolved_at is null)
      returning a.type
    )
    select coalesce(jsonb_agg(r.type order by r.type), '[]') into v_reopened from reopened r;
  end if;
  return jsonb_build_object('found', true, 'activity', public.activity_json(v_new), 'reopened', v_reopened);
end
$$;
