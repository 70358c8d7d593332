-- The sweep whatever the statistics say. A tenant that has just imported its leads (statistics on
-- lead_state taken before: its due leads estimated at one row) into an empty, never-analysed
-- max_alerts made the planner pick nested loops that rescan their inner side for every due row
-- (max_alerts once per raised alert, the judged rules once per judged rule): 44x a bare insert of
-- the same rows (issue 14). Every join in the sweep's statement is between sets the size of the
-- due leads, so when there are many, the statement is planned with hash joins only: linear in the
-- due leads whatever the estimate. A few due leads keep the planner's choice (index probes of
-- their own alerts and state), which at that size costs little even when the estimate is wrong.

-- Functions ---------------------------------------------------------------------------------------

-- Planned at each call, with the join methods the call allows (a cached plan would keep the first).
alter function public.raise_due_alerts(text, timestamptz) set plan_cache_mode = force_custom_plan;

/**
 * The scheduled sweep, for every tenant or one: raise, escalate and supersede the time-based
 * alerts of the leads that fell due by `p_now`, wake the snoozed alerts whose time has come, and
 * mark the overdue ones. One transaction. With 1,000 due leads or more, the raising statement
 * joins by hashing only (see above).
 */
create or replace function public.sweep_alerts(p_tenant text default null, p_now timestamptz default now())
returns jsonb
language plpgsql
set search_path = ''
set work_mem = '16MB'  -- sized for a 1 GB instance, like raise_due_alerts (20261123000100_grants)
as $$
declare
  v_nestloop text := current_setting('enable_nestloop');
  v_raised   jsonb;
  v_woken    jsonb;
  v_overdue  integer;
begin
  if (select count(*) from (select from public.lead_state s
                            where s.next_due_at <= p_now and (p_tenant is null or s.tenant_id = p_tenant)
                            limit 1000) d) >= 1000 then
    perform set_config('enable_nestloop', 'off', true);
  end if;
  v_raised := public.raise_due_alerts(p_tenant, p_now);
  perform set_config('enable_nestloop', v_nestloop, true);
  v_woken := public.wake_snoozed_alerts(p_tenant, p_now);
  v_overdue := public.mark_overdue_alerts(p_tenant, p_now);
  return v_raised || jsonb_build_object(
    'resolved', (v_raised ->> 'resolved')::integer + (v_woken ->> 'resolved')::integer,
    'reopened', v_woken -> 'reopened',
    'overdue', v_overdue);
end
$$;

-- The same for the history of many escalations or overdue marks at once: its trigger pairs each
-- changed alert's old and new rows, which the planner always estimates at one row each (a
-- transition table has no statistics); a nested loop over them was quadratic (4 s for 6,582
-- alerts marked overdue by one sweep, 200,000 leads).
alter function public.record_changed_alerts() set enable_nestloop = off;
