-- Plans hold on day 365, not only on day 1 (issue 24). A mature deployment analysed while almost no
-- alert was active (a year of resolved alerts, the last VACUUM ANALYZE before the morning sweep)
-- has statistics that say no alert is active: every partial index `where resolved_at is null`
-- looks empty, so the lead's own unique index (tenant_id, lead_id, type) and the dashboard's
-- order index (tenant_id, severity_rank, ...) cost the same for "this lead's active alerts", and
-- which one a cached plan uses is a tie broken by hair-thin cost differences. Measured at 40,000 leads
-- (a year of history, 12,400 alerts raised by the morning sweep): the generic plan of the lookup
-- costs 8.22 through either index; with the order index, the lookup reads every active alert of
-- the tenant (Index Cond tenant_id only, Filter lead_id), twice a call. The morning's alerts are a
-- few percent of max_alerts, far below autovacuum's analyze trigger (10 %), so it lasts for days.
--
-- The sweep now refreshes max_alerts' statistics once it has raised its alerts, when they know fewer
-- than half of the active alerts (and there are at least 1,000): ANALYZE in the sweep's transaction counts
-- the alerts it has just raised, and every cached plan that reads max_alerts is made again under
-- the new statistics (ANALYZE invalidates them). The lead's active alerts are then estimated at
-- one row through its unique index and at the tenant's thousands through any other, whatever the
-- indexes' sizes. Run as Supabase Cron runs the sweep or through the store alike.
--
-- A list resolves the alerts it answers by their primary keys (since the baseline), but the statement
-- also said "still active" (`resolved_at is null`), so every partial index of the active alerts
-- could serve it with the tenant alone as its key; under the statistics above it read the tenant's
-- active alerts to keep the list's (2,000 for 100 alerts in tests/test_plans.py, on a connection
-- whose plans were made the evening before, while each lead's lookup read them all too: 200,000
-- rows for a list of 100). "Still active" is now written in a form no partial index's predicate is
-- proved from: only the primary key serves the statement, whatever the statistics.
--
-- The sweep never JIT-compiles its statements (their cost estimates grow with a mature table: on
-- PostgreSQL 15 with JIT, 5.5 s instead of 0.53 s for a sweep of 6,200 alerts at 20,000 leads).
--
-- Supabase Cron runs `call public.scheduled_sweep()`: the sweep, committed, then its prune, as
-- Store.sweep does, so the next sweep with nothing due visits none of the due times it moved.
-- tests/test_plans.py (the mature state: they fail without this migration); bench/mature.py.
-- The functions as supabase/schemas/50_sweep.sql and 20_activities.sql have them (the baseline's but
-- for the above).

-- Functions ---------------------------------------------------------------------------------------

/**
 * ANALYZE max_alerts' `resolved_at` (which of its rows are active) and its size when its statistics
 * know fewer than half of the active alerts (the maintained counts) and there are at least
 * `p_min_active` of them; answers whether it did. A sample of 9,000 rows (statistics target 30):
 * 0.11 s at 300,000 alerts where a full ANALYZE took 0.64 s; the other columns keep the statistics
 * of the last full ANALYZE, until autovacuum's next one. Skipped when another VACUUM or ANALYZE
 * holds the table. Called by the sweep, in its transaction.
 */
create function public.refresh_alert_statistics(p_min_active bigint default 1000) returns boolean
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
 * The scheduled sweep, for every tenant or one: raise, escalate and supersede the time-based
 * alerts of the leads that fell due by `p_now`, wake the snoozed alerts whose time has come, and
 * mark the overdue ones. One transaction. With 1,000 due leads or more, the raising statement
 * joins by hashing only (supabase/schemas/50_sweep.sql says why). Once the alerts are raised, max_alerts'
 * statistics are refreshed when they know fewer than half of the active alerts
 * (refresh_alert_statistics), before waking the snoozed alerts and marking the overdue ones reads them.
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
  -- Before the next steps read the active alerts: they are planned again under the new statistics.
  perform public.refresh_alert_statistics();
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
create procedure public.scheduled_sweep(p_tenant text default null)
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
 * Log activities of distinct leads (no two with the same lead, no two with the same channel and
 * external id) and apply the rules they trigger, exactly as `log_activity` describes; answer one
 * result per activity, keyed by its `ord`: the rules of `log_activity`, set-based. The core of
 * `log_activities`, which checks the caller and the input first; nobody calls it directly.
 *
 * 1. Store the activities (a replay of a stored external id is not stored again), lock the state
 *    rows of the leads they concern and read them (one writer per lead at a time); create those
 *    missing, then lock and read them too.
 * 2. Move each lead's state forward and judge, from the state read, the lead's active alerts and
 *    its newest activities (read only when an ingest-time rule can fire), what the activity
 *    answers and raises. One statement: a fresh snapshot taken once the leads are locked.
 * 3. Resolve (by the alerts' primary keys), then raise, only when there is something to resolve
 *    or raise (an alert write fires the history triggers even when it writes nothing).
 */
create or replace function public.ingest_activities(p_tenant text, p_items public.activity_in[])
returns jsonb
language plpgsql
set search_path = ''
-- Each statement reads a few leads by key: one plan, made once per connection, never replanned per call.
set plan_cache_mode = force_generic_plan
as $$
declare
  v_rows     public.lead_activities[];
  v_contacts bigint;                  -- how many of them count as contact
  v_state    public.lead_state[];     -- the state of their leads before them, locked
  v_verdicts public.ingest_verdict[];
  v_answered uuid[];                  -- the active alerts the activities answer, to resolve
  v_resolver jsonb;                   -- the activity answering them, by lead
  v_resolved jsonb;
  v_created  jsonb;
  v_results  jsonb;
begin
  with stored as (
    insert into public.lead_activities as a
      (tenant_id, lead_id, channel, direction, status, message_snippet, meta, occurred_at, external_id)
    select p_tenant, i.lead_id, i.channel, i.direction, coalesce(i.status, 'sent'), left(i.message_snippet, 100),
           i.meta, coalesce(i.occurred_at, now()), i.external_id
    from unnest(p_items) i
    order by i.ord
    on conflict (tenant_id, channel, external_id) where external_id is not null do nothing
    returning a.tenant_id, a.lead_id, a.status, a.occurred_at, a as activity
  ),
  -- The leads' state, locked in key order: its latest version (the lock waits for another writer).
  locked as (
    select s from public.lead_state s
    where s.tenant_id = p_tenant
      and s.lead_id in (select a.lead_id from stored a where public.counts_as_contact(a.status))
    order by s.lead_id
    for update
  ),
  entered as (  -- a lead first heard of now: its silence starts with this activity
    insert into public.lead_state (tenant_id, lead_id, entered_at)
    select a.tenant_id, a.lead_id, a.occurred_at from stored a
    where public.counts_as_contact(a.status) and a.lead_id not in (select (l.s).lead_id from locked l)
    on conflict do nothing
  )
  select array_agg(s.activity), count(*) filter (where public.counts_as_contact(s.status)),
         (select array_agg(l.s) from locked l)
  into v_rows, v_contacts, v_state
  from stored s;

  if coalesce(cardinality(v_state), 0) < v_contacts then
    -- Leads first heard of now (their rows, created above, were invisible to the lock): lock and
    -- read them all again.
    select array_agg(l.s) into v_state
    from (select s from public.lead_state s
          where s.tenant_id = p_tenant
            and s.lead_id in (select a.lead_id from unnest(v_rows) a where public.counts_as_contact(a.status))
          order by s.lead_id
          for update) l;
  end if;

  with rules as materialized (
    select r.no_contact as t_no_contact, r.no_reply as t_no_reply, r.stale as t_stale,
           r.high_value as t_high_value, r.hot_window, r.hot_count, r.preferred_window, r.preferred_count
    from public.rules_at_ingest(p_tenant) r
  ),
  moved as (  -- the lead's state before (s) and after (last_*) the activity
    select s.*, a.id as activity_id, a.direction as dir, a.channel as chan, a.occurred_at as at,
           greatest(s.last_activity_at, a.occurred_at) as last_at,
           case when a.direction = 'in' then greatest(s.last_inbound_at, a.occurred_at)
                else s.last_inbound_at end as last_in,
           case when a.direction = 'out' then greatest(s.last_outbound_at, a.occurred_at)
                else s.last_outbound_at end as last_out,
           r.*
    from unnest(v_state) s
    join unnest(v_rows) a on a.lead_id = s.lead_id
    cross join rules r
  ),
  judged as (
    select m.*,
           -- Any later activity breaks the silence: NoContact7d, StaleLead30d and HighValueRisk start over.
           m.last_at is distinct from m.last_activity_at as silence_broken,
           -- Anything after our last outbound answers NoReply3d: a reply ends it, a new message restarts it.
           m.at > coalesce(m.last_outbound_at, '-infinity') as after_ours,
           -- HotLead24h counts the inbound after this: the window, our last outbound.
           greatest(now() - m.hot_window, coalesce(m.last_out, '-infinity')) as cutoff
    from moved m
  ),
  answered as (
    select j.*,
           case when j.silence_broken then array['NoContact7d', 'StaleLead30d', 'HighValueRisk'] else '{}' end
           || case when j.after_ours then array['NoReply3d'] else '{}' end as answers
    from judged j
  ),
  moved_state as (
    update public.lead_state s set
      last_activity_at  = j.last_at,
      last_inbound_at   = j.last_in,
      last_outbound_at  = j.last_out,
      no_contact_due_at = case when j.silence_broken then j.last_at + j.t_no_contact else s.no_contact_due_at end,
      stale_due_at      = case when j.silence_broken then j.last_at + j.t_stale else s.stale_due_at end,
      high_value_due_at = case when j.silence_broken then case when s.high_value then j.last_at + j.t_high_value end
                               else s.high_value_due_at end,
      no_reply_due_at   = case when j.after_ours
                               then case when j.last_out > coalesce(j.last_in, '-infinity') then j.last_out + j.t_no_reply end
                               else s.no_reply_due_at end
    from answered j
    where s.tenant_id = p_tenant and s.lead_id = j.lead_id
  ),
  -- Only when a rule can fire: enabled, not already active, and (HotLead24h) an inbound within the
  -- window after our last outbound, (PreferredChannel) once we have written. HotLead24h reads the
  -- burst only when an earlier inbound may be in the window: the lead's `last_inbound_at` is never
  -- older than its newest stored inbound, so when it is not after the cutoff this inbound is alone.
  ruled as (
    select j.*, o.answered_ids,
           j.dir = 'in' and j.hot_count is not null and not 'HotLead24h' = any (coalesce(o.still_open, '{}'))
             and j.at > j.cutoff and (j.hot_count <= 1 or j.last_inbound_at > j.cutoff) as hot,
           j.preferred_count is not null and not 'PreferredChannel' = any (coalesce(o.still_open, '{}'))
             and j.last_out is not null as preferred
    from answered j
    -- The lead's active alerts: those the activity answers (an outbound also answers HotLead24h, and
    -- PreferredChannel when it uses the lead's channel), and those still active after it.
    cross join lateral (
      select array_agg(x.type) filter (where not x.answered) as still_open,
             array_agg(a.id) filter (where x.answered) as answered_ids
      from public.max_alerts a
      cross join lateral (
        select a.type::text as type,
               a.type::text = any (j.answers)
               or (j.dir = 'out' and j.at > a.cycle_started_at
                   and (a.type = 'HotLead24h' or (a.type = 'PreferredChannel' and a.channel = j.chan))) as answered
      ) x
      where a.tenant_id = p_tenant and a.lead_id = j.lead_id and a.resolved_at is null
    ) o
  )
  select array_agg(row(r.lead_id, b.n, b.since, r.hot and coalesce(b.n, 0) >= r.hot_count,
                       p.channel, o.since,
                       r.preferred and p.channel is not null and cardinality(o.channels) = 2
                         and not p.channel = any (o.channels))::public.ingest_verdict),
         (select array_agg(x.id) from ruled x2 cross join unnest(x2.answered_ids) x(id)),
         jsonb_object_agg(r.lead_id, r.activity_id) filter (where r.answered_ids is not null)
  into v_verdicts, v_answered, v_resolver
  from ruled r
  -- Our last 2 outbound, read in the index's order: PreferredChannel needs both.
  left join lateral (
    select array_agg(x.channel::text) as channels, min(x.occurred_at) as since
    from (select a.channel, a.occurred_at
          from public.lead_activities a
          where a.tenant_id = p_tenant and a.lead_id = r.lead_id
            and a.direction = 'out' and public.counts_as_contact(a.status)
          order by a.occurred_at desc, a.id desc
          limit 2) x
  ) o on r.preferred
  -- The lead's newest inbound (HotLead24h's burst, PreferredChannel's last 5); this activity is
  -- among them (it is stored).
  left join lateral (
    select array_agg(x.channel::text order by x.occurred_at desc, x.id desc) as channels,
           array_agg(x.occurred_at order by x.occurred_at desc, x.id desc) as times
    from (select a.channel, a.occurred_at, a.id
          from public.lead_activities a
          where a.tenant_id = p_tenant and a.lead_id = r.lead_id
            and a.direction = 'in' and public.counts_as_contact(a.status)
          order by a.occurred_at desc, a.id desc
          limit greatest(5, r.hot_count)) x
  ) i on r.hot or (r.preferred and cardinality(o.channels) = 2)
  -- The burst: the last `min_count` inbound that occurred after the cutoff.
  left join lateral (
    select count(*)::integer as n, min(u.at) as since
    from unnest(i.channels, i.times) with ordinality u(channel, at, k)
    where u.k <= r.hot_count and u.at > r.cutoff
  ) b on r.hot
  -- The lead's channel: the one at least `min_count` of the last 5 inbound came on (within the
  -- rule's window, if any), else the directory's (which the lead's state carries).
  left join lateral (
    select coalesce(
             (select u.channel
              from unnest(i.channels, i.times) with ordinality u(channel, at, k)
              where u.k <= 5 and (r.preferred_window is null or u.at > now() - r.preferred_window)
              group by u.channel
              having count(*) >= r.preferred_count
              order by count(*) desc, max(u.at) desc
              limit 1),
             r.preferred_channel::text) as channel
  ) p on r.preferred and cardinality(o.channels) = 2;

  if v_answered is not null then
    -- The alerts judging found answered, by their keys (no join whose method the statistics would
    -- choose); a concurrent resolution is seen and left alone. "Still active" is written so that no
    -- partial index of the active alerts can serve the statement (they all imply `resolved_at is
    -- null`, which this form does not prove): only the primary key, whatever the statistics. Under
    -- those of a mature table analysed with no alert active, the tenant's active alerts looked
    -- empty and the plan read them all, keeping the list's.
    with resolved as (
      update public.max_alerts a
      set resolved_at = now(), resolved_by = 'system', resolution = 'activity',
          resolved_by_activity = (v_resolver ->> a.lead_id)::uuid
      where a.tenant_id = p_tenant and a.id = any (v_answered) and (a.resolved_at is null) is true
      returning a.lead_id, a.type
    )
    select jsonb_object_agg(r.lead_id, r.types) into v_resolved
    from (select r.lead_id, jsonb_agg(r.type order by r.type) as types from resolved r group by r.lead_id) r;
  end if;

  if exists (select from unnest(v_verdicts) v where v.raise_hot or v.raise_pref) then
    -- The rule's message and action in the tenant's language: `{count}`, `{hours}` and `{channel}` filled in.
    with raised as (
      insert into public.max_alerts
        (tenant_id, lead_id, type, severity, message, suggested_action, cycle_started_at, channel)
      select p_tenant, v.lead_id, r.type, r.severity,
             replace(replace(replace(coalesce(r.messages ->> r.locale, r.messages ->> 'fr'),
                                     '{count}', coalesce(e.n::text, '')),
                             '{hours}', coalesce((extract(epoch from r.threshold) / 3600)::integer::text, '')),
                     '{channel}', coalesce(e.channel, '')),
             jsonb_build_object(
               'label', coalesce(r.action -> 'label' ->> r.locale, r.action -> 'label' ->> 'fr'),
               'action', r.action ->> 'action',
               'params', coalesce(r.action -> 'params', '{}'::jsonb) || jsonb_build_object('leadId', v.lead_id)
                         || case when e.channel is null then '{}'::jsonb
                                 else jsonb_build_object('channel', e.channel) end),
             e.since, e.channel::public.channel
      from unnest(v_verdicts) v
      cross join lateral (values ('HotLead24h', v.raise_hot, v.hot_since, v.hot_count, null::text),
                                 ('PreferredChannel', v.raise_pref, v.pref_since, null, v.pref_channel))
        e(type, raise, since, n, channel)
      join public.rules_for(p_tenant) r on r.type = e.type
      where e.raise
      order by v.lead_id, e.type
      returning lead_id, type
    )
    select jsonb_object_agg(c.lead_id, c.types) into v_created
    from (select c.lead_id, jsonb_agg(c.type order by c.type) as types from raised c group by c.lead_id) c;
  end if;

  -- One answer per activity, by its place; a replay answers with what was stored the first time (read
  -- now, in a fresh snapshot: it may have been stored by a transaction that committed meanwhile).
  select jsonb_object_agg(i.ord,
           case when a.id is not null then
             jsonb_build_object('activity', public.activity_json(a),
                                'alerts', jsonb_build_object('created', coalesce(v_created -> a.lead_id, '[]'),
                                                             'resolved', coalesce(v_resolved -> a.lead_id, '[]')),
                                'duplicate', false)
           else
             jsonb_build_object('activity', (select public.activity_json(d) from public.lead_activities d
                                             where d.tenant_id = p_tenant and d.channel = i.channel
                                               and d.external_id = i.external_id),
                                'alerts', jsonb_build_object('created', '[]'::jsonb, 'resolved', '[]'::jsonb),
                                'duplicate', true)
           end)
  into v_results
  from unnest(p_items) i
  left join unnest(v_rows) a on a.lead_id = i.lead_id;
  return v_results;
end
$$;
grant execute on function public.ingest_activities(text, public.activity_in[]) to service_role;
