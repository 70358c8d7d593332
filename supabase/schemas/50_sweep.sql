-- The sweep: raises, escalates and supersedes the time-based alerts of the leads that became due.

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Functions ---------------------------------------------------------------------------------------

-- The sweep whatever the statistics say. A tenant that has just imported its leads (statistics on
-- lead_state taken before: its due leads estimated at one row) into an empty, never-analysed
-- max_alerts made the planner pick nested loops that rescan their inner side for every due row
-- (max_alerts once per raised alert, the judged rules once per judged rule): 44x a bare insert of
-- the same rows. Every join in the sweep's statement is between sets the size of the due leads, so
-- when there are many, sweep_alerts plans it with hash joins only: linear in the due leads whatever
-- the estimate (a merge join would sort the judged rules, spilling to disk past work_mem, where a
-- hash of the few rules in force serves: a tenant's own rows of alert_rules, as when a rule moves to
-- the business clock, raised the estimate of the rules enough to make the planner sort). A few due
-- leads keep the planner's choice (index probes of their own alerts and state), which at that size
-- costs little even when the estimate is wrong. raise_due_alerts is planned at each call, with the
-- join methods the call allows (a cached plan would keep the first).
--
-- Plans hold on day 365 too. A mature deployment analysed while almost no alert was active (a year
-- of resolved alerts, the last ANALYZE before the morning sweep) has statistics that say no alert is
-- active: every partial index `where resolved_at is null` looks empty, and which index a cached plan
-- uses to read one lead's active alerts is a tie, lost by the dashboard's order index (it reads every
-- active alert of the tenant). The morning's alerts are a few percent of max_alerts, far below
-- autovacuum's analyze trigger (10 %), so it lasts for days. The sweep therefore refreshes
-- max_alerts' statistics once it has raised its alerts (refresh_alert_statistics), which also makes
-- every cached plan that reads max_alerts be made again; its statements are never JIT-compiled.
-- Supabase Cron runs `call public.scheduled_sweep()`: the sweep, committed, then its prune.

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

/**
 * ANALYZE max_alerts' `resolved_at` (which of its rows are active) and its size when its statistics
 * know fewer than half of the active alerts (the maintained counts) and there are at least
 * `p_min_active` of them; answers whether it did. A sample of 9,000 rows (statistics target 30):
 * 0.11 s at 300,000 alerts where a full ANALYZE took 0.64 s; the other columns keep the statistics
 * of the last full ANALYZE, until autovacuum's next one. Skipped when another VACUUM or ANALYZE
 * holds the table. Called by the sweep, in its transaction.
 */
create or replace function public.refresh_alert_statistics(p_min_active bigint default 1000) returns boolean
language plpgsql
security definer  -- ANALYZE needs the table's owner; the API roles only run this
set search_path = ''
set default_statistics_target = 30
as $$
declare
  v_active bigint;
  v_known  double precision;  -- the active alerts the statistics know: rows times the share never resolved
begin
  select coalesce(sum(c.active), 0) into v_active from public.alert_counts c;
  if v_active < p_min_active then
    return false;
  end if;
  select greatest(c.reltuples, 0) * coalesce(
           (select s.null_frac from pg_catalog.pg_stats s
            where s.schemaname = 'public' and s.tablename = 'max_alerts' and s.attname = 'resolved_at'), 0)
  into v_known
  from pg_catalog.pg_class c
  where c.oid = 'public.max_alerts'::regclass;
  if v_active <= 2 * v_known then
    return false;
  end if;
  analyze (skip_locked) public.max_alerts (resolved_at);
  return true;
end
$$;
grant execute on function public.refresh_alert_statistics(bigint) to service_role;

/**
 * The sweep as the database's own scheduler runs it (Supabase Cron: `call public.scheduled_sweep()`):
 * the sweep, committed, then the due-time index read past the entries the sweep left behind
 * (prune_due_index), as `Store.sweep` does over HTTP and from the CLI. A sweep moves every due
 * lead's due times on, each update leaving an entry for the old row version in the range the next
 * sweep reads; run as `select public.sweep_alerts()` nothing read them once committed, and the next
 * sweep, nothing due, visited each in the heap (65 ms at 200,000 leads after a sweep of 52,000
 * alerts, issue 24). A procedure, to commit between the two: it takes no SET clause (a procedure
 * that has one cannot commit), so it names every object with its schema; call it on its own, not
 * inside a transaction block.
 */
create or replace procedure public.scheduled_sweep(p_tenant text default null)
language plpgsql
as $$
begin
  perform public.sweep_alerts(p_tenant);
  commit;
  perform public.prune_due_index();
end
$$;
grant execute on procedure public.scheduled_sweep(text) to service_role;

/**
 * Raise, escalate and supersede the time-based alerts of every lead that fell due by `p_now`
 * (one tenant, or all of them), then move each lead's due times on to the next step of its
 * ladder, on each rule's clock. One statement: concurrent sweeps wait on the same state rows, re-check them, and find
 * nothing left to do; the unique index on active alerts is the last word on duplicates.
 */
create or replace function public.raise_due_alerts(p_tenant text default null, p_now timestamptz default now())
returns jsonb
language plpgsql
set search_path = ''
set work_mem = '16MB'                        -- sized for a 1 GB instance (README, "Performance")
set plan_cache_mode = force_custom_plan      -- planned with the join methods each call allows
as $$
declare
  v_result jsonb;
begin
  for v_attempt in 1..3 loop
    begin
      with due as (
        select s.tenant_id, s.lead_id, s.no_contact_due_at, s.no_reply_due_at, s.stale_due_at, s.high_value_due_at,
               coalesce(s.last_activity_at, s.entered_at) as silent_since, s.last_outbound_at
        from public.lead_state s
        where s.next_due_at <= p_now and (p_tenant is null or s.tenant_id = p_tenant)
        for update
      ),
      -- The rules in force for each tenant with due leads, their message and action rendered once.
      rules as (
        select distinct on (t.tenant_id, r.type)
               t.tenant_id, r.type, r.enabled, r.threshold, r.severity, r.escalate_after, r.escalated_severity,
               r.supersedes, r.clock = 'business' as business,
               case when r.clock = 'business' then public.calendar_for(t.tenant_id) end as cal,
               coalesce(r.messages ->> r.locale, r.messages ->> 'fr') as message,
               jsonb_build_object('label', coalesce(r.action -> 'label' ->> r.locale, r.action -> 'label' ->> 'fr'),
                                  'action', r.action ->> 'action',
                                  'params', coalesce(r.action -> 'params', '{}'::jsonb)) as action
        from (select distinct d.tenant_id from due d) t
        join public.alert_rules r on r.tenant_id in (t.tenant_id, '*')
        order by t.tenant_id, r.type, r.tenant_id = '*'
      ),
      -- Each rule whose due time has come, with the moment its condition began to hold, and the
      -- severity its ladder gives today and when its next step falls due (null: no further step).
      judged as (
        select j.tenant_id, j.lead_id, j.type, j.since, j.supersedes,
          case
            when j.enabled is not true or j.since is null then null
            when j.business then case when p_now >= j.escalate_at then j.escalated_severity else j.severity end
            when p_now - j.since >= j.escalate_after then j.escalated_severity
            when p_now - j.since >= j.threshold then j.severity
          end::public.severity as severity,
          case
            when j.enabled is not true or j.since is null then null
            when j.business then case when p_now < j.escalate_at then j.escalate_at end
            when p_now - j.since < j.threshold then j.since + j.threshold
            when p_now - j.since < j.escalate_after then j.since + j.escalate_after
          end as next_due_at
        from (
          select d.tenant_id, d.lead_id, c.type, c.since, r.supersedes, r.enabled, r.business, r.threshold,
                 r.severity, r.escalate_after, r.escalated_severity,
                 -- On the business clock, the stored due time that came is the ladder's step on that
                 -- clock (recomputed whenever the rule or the calendar changes): the threshold has
                 -- passed, and only the escalation step is computed here, in working time, once a
                 -- judged rule: a column of this subquery, which the expressions above read (OFFSET 0
                 -- keeps it from being folded into each of them and computed each time).
                 case when r.business then public.clock_add(r.cal, true, c.since, r.escalate_after) end as escalate_at
          from due d
          cross join lateral (values
            ('NoContact7d'::public.alert_type, d.no_contact_due_at, d.silent_since),
            ('NoReply3d',                      d.no_reply_due_at,   d.last_outbound_at),
            ('StaleLead30d',                   d.stale_due_at,      d.silent_since),
            ('HighValueRisk',                  d.high_value_due_at, d.silent_since)
          ) as c (type, due_at, since)
          left join rules r on r.tenant_id = d.tenant_id and r.type = c.type
          where c.due_at <= p_now
          offset 0
        ) j
      ),
      raised as (
        select j.tenant_id, j.lead_id, j.type, j.since, j.severity, j.supersedes
        from judged j
        where j.severity is not null
          and not exists (select from judged s
                          where s.supersedes = j.type and s.severity is not null
                            and s.tenant_id = j.tenant_id and s.lead_id = j.lead_id)
      ),
      -- Each raised rule with the lead's active alert of its type, if it has one: one lookup.
      matched as (
        select r.tenant_id, r.lead_id, r.type, r.since, r.severity, a.id as alert_id, a.severity_rank
        from raised r
        left join public.max_alerts a
          on a.tenant_id = r.tenant_id and a.lead_id = r.lead_id and a.type = r.type and a.resolved_at is null
             and (p_tenant is null or a.tenant_id = p_tenant)  -- a tenant's sweep reads its own alerts
      ),
      -- A rule raised on a lead with no active alert of its type creates one...
      created as (
        insert into public.max_alerts (tenant_id, lead_id, type, severity, message, suggested_action, cycle_started_at)
        select m.tenant_id, m.lead_id, m.type, m.severity,
               replace(u.message, '{days}', floor(extract(epoch from p_now - m.since) / 86400)::integer::text),
               jsonb_set(u.action, '{params,leadId}', to_jsonb(m.lead_id)),
               m.since
        from matched m
        join rules u on u.tenant_id = m.tenant_id and u.type = m.type
        where m.alert_id is null
        returning type
      ),
      -- ...and on a lead that has one, raises its severity in place (never lowers it).
      escalated as (
        update public.max_alerts a
        set severity = m.severity, escalated_at = now(),
            message = replace(u.message, '{days}', floor(extract(epoch from p_now - m.since) / 86400)::integer::text)
        from matched m
        join rules u on u.tenant_id = m.tenant_id and u.type = m.type
        where m.alert_id is not null
          and (case m.severity when 'high' then 1 when 'med' then 2 else 3 end) < m.severity_rank
          and a.tenant_id = m.tenant_id and a.id = m.alert_id and a.resolved_at is null
          and (p_tenant is null or a.tenant_id = p_tenant)
          and (case m.severity when 'high' then 1 when 'med' then 2 else 3 end) < a.severity_rank
        returning a.id
      ),
      superseded as (
        update public.max_alerts a
        set resolved_at = now(), resolved_by = 'system', resolution = 'superseded'
        from raised r
        where r.supersedes is not null
          and a.tenant_id = r.tenant_id and a.lead_id = r.lead_id and a.type = r.supersedes and a.resolved_at is null
          and (p_tenant is null or a.tenant_id = p_tenant)
        returning a.id
      ),
      moved as (
        update public.lead_state s set
          no_contact_due_at = case when m.no_contact then m.no_contact_due_at else s.no_contact_due_at end,
          no_reply_due_at   = case when m.no_reply   then m.no_reply_due_at   else s.no_reply_due_at end,
          stale_due_at      = case when m.stale      then m.stale_due_at      else s.stale_due_at end,
          high_value_due_at = case when m.high_value then m.high_value_due_at else s.high_value_due_at end
        from (
          select j.tenant_id, j.lead_id,
                 bool_or(j.type = 'NoContact7d')   as no_contact, max(j.next_due_at) filter (where j.type = 'NoContact7d')   as no_contact_due_at,
                 bool_or(j.type = 'NoReply3d')     as no_reply,   max(j.next_due_at) filter (where j.type = 'NoReply3d')     as no_reply_due_at,
                 bool_or(j.type = 'StaleLead30d')  as stale,      max(j.next_due_at) filter (where j.type = 'StaleLead30d')  as stale_due_at,
                 bool_or(j.type = 'HighValueRisk') as high_value, max(j.next_due_at) filter (where j.type = 'HighValueRisk') as high_value_due_at
          from judged j
          group by j.tenant_id, j.lead_id
        ) m
        where s.tenant_id = m.tenant_id and s.lead_id = m.lead_id
          and s.next_due_at <= p_now and (p_tenant is null or s.tenant_id = p_tenant)  -- the due rows, by index
        returning 1
      )
      select jsonb_build_object(
        'created', (select jsonb_build_object(
                      'NoContact7d',   count(*) filter (where c.type = 'NoContact7d'),
                      'NoReply3d',     count(*) filter (where c.type = 'NoReply3d'),
                      'StaleLead30d',  count(*) filter (where c.type = 'StaleLead30d'),
                      'HighValueRisk', count(*) filter (where c.type = 'HighValueRisk'))
                    from created c),
        'escalated', (select count(*) from escalated),
        'resolved', (select count(*) from superseded),
        'leads_checked', (select count(*) from moved))
      into v_result;
      return v_result;
    exception when unique_violation then
      -- Another path opened an alert of the same type for a due lead while this statement ran
      -- (its snapshot could not see it): judge again, with a snapshot that does.
      if v_attempt = 3 then
        raise;
      end if;
    end;
  end loop;
  return null;  -- not reached: the last attempt returns or raises
end
$$;
grant execute on function public.raise_due_alerts(text, timestamptz) to service_role;
