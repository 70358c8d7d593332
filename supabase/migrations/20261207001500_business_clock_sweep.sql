-- The business clock in the sweep. raise_due_alerts computes a judged rule's escalation step on the
-- business clock as a column of a subquery fenced by OFFSET 0 instead of a row of a lateral VALUES:
-- a VALUES scan compiles its expressions again for each outer row (the arithmetic's whole call,
-- every lead), where a projection compiles them once. sweep_alerts plans a big sweep without merge
-- joins as well as without nested loops: a tenant's own rows of alert_rules (a rule moved to the
-- business clock) raised the estimate of the rules in force enough for the planner to sort the
-- judged rules, past work_mem at a million due leads, where a hash of the few rules serves.
-- add_working_days starts from the next opening's instant read back on the clock, as the day-by-day
-- oracle does: an opening within a daylight-saving gap (02:00 on the spring night) starts at 03:00.

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
 * statement's planning 8 ms more on a new connection, the statistics check 2.5-4 ms).
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
  v_woken := public.wake_snoozed_alerts(p_tenant, p_now);
  v_overdue := public.mark_overdue_alerts(p_tenant, p_now);
  return v_raised || jsonb_build_object(
    'resolved', (v_raised ->> 'resolved')::integer + (v_woken ->> 'resolved')::integer,
    'reopened', v_woken -> 'reopened',
    'overdue', v_overdue);
end
$$;
grant execute on function public.sweep_alerts(text, timestamptz) to service_role;

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

/**
 * `p_at` plus `p_days` working days: the same local clock time that many working days later. An
 * instant outside working hours counts from the next opening; a result outside working hours (a
 * shorter day, a clock change) moves to the next opening. The day is found by its rank among the
 * working days that are not holidays: no step per day, week or holiday.
 */
create or replace function public.add_working_days(
  p_zone text, p_opens integer[], p_closes integer[], p_weekdays integer[], p_days_through integer[],  -- a calendar
  p_closed date[], p_ranks integer[],
  p_at timestamptz, p_days integer)
returns timestamptz
language plpgsql immutable
as $$
declare
  v_start  timestamp;
  v_jd     integer;
  v_minute integer;
  v_rank   integer;
  v_local  timestamp;
  v_end    timestamptz;
begin
  if p_at is null or p_days is null or not isfinite(p_at) then
    return p_at + make_interval(days => p_days);
  end if;
  if p_days <= 0 then
    return p_at;
  end if;
  -- The start: p_at within working hours, else the next opening.
  v_start := p_at at time zone p_zone;
  v_jd := v_start::date - date '4714-11-24 BC';
  v_minute := v_jd % 7 * 1440 + date_part('hour', v_start)::integer * 60 + date_part('minute', v_start)::integer;
  if not coalesce(p_opens[width_bucket(v_minute, p_closes) + 1] <= v_minute, false)
     or p_closed[width_bucket(v_start::date, p_closed)] = v_start::date then
    v_start := public.next_opening_local(p_opens, p_closes, p_weekdays, p_days_through, p_closed, p_ranks, v_start);
    -- The start is that opening's instant, read back on the clock: an opening the clock skips (in a
    -- daylight-saving gap) starts when the clock shows the time after the gap.
    v_start := (v_start at time zone p_zone) at time zone p_zone;
    v_jd := v_start::date - date '4714-11-24 BC';
  end if;
  -- The rank (from 0) of the day p_days after the start's among the working days that are not
  -- holidays, then among the working days, then that day (its Julian day) at the start's clock time.
  v_rank := v_jd / 7 * cardinality(p_weekdays) + p_days_through[v_jd % 7 + 1] - width_bucket(v_start::date, p_closed)
            + p_days - 1;
  v_rank := v_rank + width_bucket(v_rank, p_ranks);
  v_jd := v_rank / cardinality(p_weekdays) * 7 + p_weekdays[v_rank % cardinality(p_weekdays) + 1];
  v_local := date '4714-11-24 BC' + v_jd + v_start::time;
  v_end := v_local at time zone p_zone;
  v_minute := v_jd % 7 * 1440 + date_part('hour', v_local)::integer * 60 + date_part('minute', v_local)::integer;
  if v_end at time zone p_zone = v_local and p_opens[width_bucket(v_minute, p_closes) + 1] <= v_minute then
    return v_end;  -- the clock showed that time that day, within its working hours
  end if;
  return public.next_opening(p_zone, p_opens, p_closes, p_weekdays, p_days_through, p_closed, p_ranks, v_end);
end
$$;
grant execute on function public.add_working_days(text, integer[], integer[], integer[], integer[], date[], integer[],
                                                  timestamptz, integer)
  to authenticated, service_role;
