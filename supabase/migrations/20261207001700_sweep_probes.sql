-- Nothing due costs little on a new connection too (issue 24): Supabase Cron opens one for each run,
-- whose first sweep planned the statements that wake the snoozed alerts and mark the overdue ones
-- (3-4 ms each at 200,000 leads) even when neither had anything to do. The sweep now runs each only
-- when its own index holds a row for it (a snoozed alert whose time has come; a high alert past the
-- shortest overdue delay).

/**
 * The scheduled sweep, for every tenant or one: raise, escalate and supersede the time-based
 * alerts of the leads that fell due by `p_now`, wake the snoozed alerts whose time has come, and
 * mark the overdue ones. One transaction. With 1,000 due leads or more, the raising statement
 * joins by hashing only (the note above says why). Once the alerts are raised, max_alerts'
 * statistics are refreshed when they know fewer than half of the active alerts
 * (refresh_alert_statistics), before waking the snoozed alerts and marking the overdue ones reads them.
 * When no lead of any tenant is due, the raising statement is neither planned nor run, nor are the
 * statistics checked: the due-time index's first entry says so, read from that index whatever the
 * statistics (a probe of the due rows planned under statistics taken before the morning sweep,
 * which still count its due leads, read the whole of lead_state: 5 ms at 60,000 leads, the raising
 * statement's planning 8 ms more on a new connection, the statistics check 2.5-4 ms). Waking the
 * snoozed alerts and marking the overdue ones likewise run only when their index holds a row for them.
 */
create or replace function public.sweep_alerts(p_tenant text default null, p_now timestamptz default now())
returns jsonb
language plpgsql
set search_path = ''
set work_mem = '16MB'  -- sized for a 1 GB instance, like raise_due_alerts
-- Never compiled to machine code: whether a statement is JIT-compiled follows its estimated cost,
-- which a mature max_alerts raises past jit_optimize_above_cost. On PostgreSQL 15 with JIT, the
-- raising statement of a sweep of 6,200 alerts at 20,000 leads (a year of history) took 5.3 s, of
-- which compiling with inlining and optimisation was nearly all: 0.45 s without (bench/mature.py).
set jit = off
as $$
declare
  v_nestloop  text := current_setting('enable_nestloop');
  v_mergejoin text := current_setting('enable_mergejoin');
  v_raised    jsonb;
  v_woken     jsonb;
  v_overdue   integer;
  v_overdue_after interval := (select min(r.overdue_after) from public.alert_rules r);  -- the shortest delay
begin
  -- min() of an indexed column is read from the index's first entry: no other plan is cheaper.
  if (select min(s.next_due_at) from public.lead_state s) <= p_now then
    if (select count(*) from (select from public.lead_state s
                              where s.next_due_at <= p_now and (p_tenant is null or s.tenant_id = p_tenant)
                              limit 1000) d) >= 1000 then
      perform set_config('enable_nestloop', 'off', true);
      perform set_config('enable_mergejoin', 'off', true);
    end if;
    v_raised := public.raise_due_alerts(p_tenant, p_now);
    perform set_config('enable_nestloop', v_nestloop, true);
    perform set_config('enable_mergejoin', v_mergejoin, true);
    -- Before the next steps read the active alerts: they are planned again under the new statistics.
    perform public.refresh_alert_statistics();
  else
    v_raised := '{"created": {"NoContact7d": 0, "NoReply3d": 0, "StaleLead30d": 0, "HighValueRisk": 0},
                  "escalated": 0, "resolved": 0, "leads_checked": 0}'::jsonb;
  end if;
  -- Waking and marking run only when their own index holds a row for them: otherwise their
  -- statements are neither planned nor run (on a new connection, 3-4 ms of planning each). Each
  -- probe asks for its index's first row, in that index's order: no other plan is cheaper, whatever
  -- the statistics (an EXISTS, planned as a scan of max_alerts expected to stop at its first rows,
  -- read the whole table when nothing matched: 100-240 ms at 1,000,000 leads).
  if (select a.snoozed_until from public.max_alerts a
      where a.resolved_at is null and a.snoozed_until <= p_now and (p_tenant is null or a.tenant_id = p_tenant)
      order by a.tenant_id, a.snoozed_until limit 1) is not null then
    v_woken := public.wake_snoozed_alerts(p_tenant, p_now);
  else
    v_woken := '{"reopened": 0, "resolved": 0}'::jsonb;
  end if;
  if (select min(coalesce(a.escalated_at, a.created_at)) from public.max_alerts a
      where a.resolved_at is null and a.severity_rank = 1 and a.overdue_at is null
        and (p_tenant is null or a.tenant_id = p_tenant)) <= p_now - v_overdue_after then
    v_overdue := public.mark_overdue_alerts(p_tenant, p_now);
  else
    v_overdue := 0;
  end if;
  return v_raised || jsonb_build_object(
    'resolved', (v_raised ->> 'resolved')::integer + (v_woken ->> 'resolved')::integer,
    'reopened', v_woken -> 'reopened',
    'overdue', v_overdue);
end
$$;
grant execute on function public.sweep_alerts(text, timestamptz) to service_role;
