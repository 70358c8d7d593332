-- On a Citus coordinator only (`leadwatch migrate` runs this file after the migrations when the
-- `citus` extension is present; never on plain PostgreSQL or Supabase): leadwatch distributed by
-- tenant. Safe to run again: what is already distributed is left as it is.
--
-- * Every tenant table is distributed by `tenant_id`, all colocated with `leads`: one tenant's rows
--   of every table live on one worker, so a tenant's statement never leaves that worker.
-- * The tables whose `*` rows are defaults every tenant reads (alert_rules, retention_policies,
--   business_calendars) are small configuration tables: reference tables, a copy on every node.
-- * Every PL/pgSQL function whose first argument is `p_tenant` is delegated to the worker holding
--   that tenant: the coordinator forwards the call, the body runs there against local shards. Every
--   other function is propagated to every node.
-- * Where Citus cannot plan a form PostgreSQL inlines, a Citus form replaces it here only: the SQL
--   functions that read tables become PL/pgSQL, clock_add becomes IMMUTABLE (in UTC).
-- * Citus refuses subqueries in policies on distributed tables: the policies, written in the
--   `(select f())` form Supabase recommends (evaluated once per statement), are re-created here in
--   the plain `f()` form, and an agent's own leads are tested with can_see_lead(tenant_id, lead_id).
-- * claims_to_workers(), PostgREST's `db-pre-request` on Citus: the claims PostgREST sets with
--   set_config() reach the workers as SET LOCAL. sweep_tenants(): the tenants a sweep of every
--   tenant takes one by one.

do $distribute$
declare
  v_table text;
  v_policy record;
  v_trigger record;
  v_using text;
  v_function regprocedure;
  v_delegated boolean;
  v_sql text;
  v_body text;
  v_reference constant text[] := array['alert_rules', 'retention_policies', 'business_calendars'];
  v_distributed constant text[] := array[
    'leads', 'lead_state', 'lead_activities', 'max_alerts', 'alert_events', 'alert_counts', 'greenapi_rejected',
    'alert_day_rollups', 'alert_rollup_marks', 'webhook_endpoints', 'webhook_deliveries', 'team_members',
    'member_pushes', 'digest_settings', 'member_digests', 'email_senders', 'email_rejected', 'email_sends',
    'lead_erasures'];
  v_every_tenant constant text[] := array['apply_retention', 'prune_notifications', 'summarise_recent_alert_days'];
begin
  -- Triggers on shards: each trigger here reads and writes its own tenant's rows only.
  perform set_config('citus.enable_unsafe_triggers', 'on', true);
  -- One connection per worker: distributing functions after tables in one transaction requires it.
  perform set_config('citus.multi_shard_modify_mode', 'sequential', true);
  -- The functions reach the workers in no particular order, so their bodies are checked when they
  -- run, not when they are created, there too (a SET LOCAL, run on its own, reaches the workers).
  execute $$set local citus.propagate_set_commands = 'local'$$;
  execute 'set local check_function_bodies = off';
  -- The history and queue triggers fire on a shard and write the tenant's rows of colocated tables
  -- (alert_events, the deliveries, the summaries to forget): a query from a query on a shard, which
  -- Citus refuses unless allowed. Every such trigger stays in its tenant, on the worker it runs on.
  execute format('alter database %I set citus.allow_nested_distributed_execution = on', current_database());
  perform run_command_on_workers(
    format('alter database %I set citus.allow_nested_distributed_execution = on', current_database()));

  -- A delegated call runs on the worker as the caller's role (the coordinator connects as it):
  -- the API's roles log in there. Give them no password: nodes authenticate each other (pg_hba,
  -- pg_dist_authinfo), and only the service reaches the database directly.
  alter role anon login;
  alter role authenticated login;
  alter role service_role login;

  -- Policies first: a table with a subquery in a policy cannot be distributed.
  for v_policy in
    select p.schemaname, p.tablename, p.policyname, p.qual
    from pg_policies p
    where p.schemaname = 'public' and p.tablename = any (v_distributed || v_reference) and p.qual ~* '\(\s*select'
  loop
    v_using := regexp_replace(v_policy.qual,
      'lead_id IN \( SELECT owned_leads\(\) AS owned_leads\)', 'can_see_lead(tenant_id, lead_id)', 'g');
    v_using := regexp_replace(v_using, '\( SELECT ([a-z_.]+\(\)) AS [a-z_]+\)', '\1', 'g');
    execute format('alter policy %I on %I.%I using (%s)',
                   v_policy.policyname, v_policy.schemaname, v_policy.tablename, v_using);
  end loop;

  foreach v_table in array v_reference loop
    if not exists (select from pg_dist_partition where logicalrelid = format('public.%I', v_table)::regclass) then
      perform create_reference_table(format('public.%I', v_table));
    end if;
  end loop;

  foreach v_table in array v_distributed loop
    if not exists (select from pg_dist_partition where logicalrelid = format('public.%I', v_table)::regclass) then
      perform create_distributed_table(format('public.%I', v_table), 'tenant_id',
                                       colocate_with := case when v_table = 'leads' then 'default' else 'leads' end);
    end if;
  end loop;

  -- SQL functions that read tables, in their PL/pgSQL form: Citus cannot plan the statement of a
  -- SQL function that is given a PL/pgSQL variable ("parameterized queries for SQL functions
  -- referencing distributed tables are not supported"), and PL/pgSQL statements it plans with their
  -- values. Same arguments, result, volatility and settings; on PostgreSQL they stay SQL (inlined).
  perform set_config('search_path', '', true);  -- the result types named in full
  for v_function, v_sql in
    select p.oid::regprocedure, pg_get_functiondef(p.oid)
    from pg_proc p
    where p.pronamespace = 'public'::regnamespace and p.prokind = 'f'
      and p.prolang = (select oid from pg_language where lanname = 'sql')
      and p.prosrc ~ 'public\.[a-z_]+\M(?!\()'  -- names a table (not only functions)
  loop
    v_body := rtrim(btrim(substring(v_sql from '\$function\$(.*)\$function\$')), E'; \n');
    v_body := case
      when (select proretset from pg_proc where oid = v_function) then
        E'#variable_conflict use_column\nbegin\n  return query ' || v_body || E';\nend\n'
      when (select prorettype from pg_proc where oid = v_function) = 'void'::regtype then
        E'begin\n  ' || regexp_replace(v_body, '^select', 'perform', 'i') || E';\nend\n'
      else
        format(E'#variable_conflict use_column\ndeclare\n  v_result %s;\nbegin\n  %s\n  into v_result;\n  return v_result;\nend\n',
               pg_get_function_result(v_function), v_body)
    end;
    execute regexp_replace(
      regexp_replace(v_sql, E'\n LANGUAGE sql\n', E'\n LANGUAGE plpgsql\n'),
      '\$function\$.*\$function\$', '$function$' || replace(v_body, '\', '\\') || '$function$');
  end loop;
  perform set_config('search_path', 'public', true);

  -- An agent's own leads (owned_leads, which row-level security reads for an agent) name their
  -- tenant as a value: `l.tenant_id = (select current_tenant())` is a subquery to Citus, which then
  -- read every shard of `leads` on every node for each agent's statement. Read into a variable
  -- first, the statement runs on the tenant's shard only.
  v_function := 'public.owned_leads()'::regprocedure;
  v_sql := pg_get_functiondef(v_function);
  if v_sql like '%l.tenant_id = (select public.current_tenant())%' then
    v_sql := replace(v_sql, 'l.tenant_id = (select public.current_tenant())', 'l.tenant_id = v_tenant');
    v_sql := regexp_replace(v_sql, '\(select ((public|auth)\.[a-z_]+\(\))\)', '\1', 'g');
    execute regexp_replace(v_sql, E'\nbegin\n', E'\ndeclare\n  v_tenant text := public.current_tenant();\nbegin\n');
  end if;

  -- clock_add in its Citus form: IMMUTABLE, its calendar-clock step taken in UTC. Citus refuses a
  -- STABLE function in `on conflict do update set` or in a CASE of a distributed write, and
  -- `timestamptz + interval` is STABLE only because a day's length follows the session's time
  -- zone, which for leadwatch is UTC (the stores connect with it, as Supabase does): the same value.
  -- Its definition is read back and only those two things change, so the working-time branches stay
  -- the ones supabase/schemas/45_business_hours.sql defines.
  v_function := 'public.clock_add(public.business_calendars, boolean, timestamptz, interval)'::regprocedure;
  execute replace(replace(pg_get_functiondef(v_function), E'\n STABLE\n', E'\n IMMUTABLE\n'),
                  'then p_at + p_span', $utc$then ((p_at at time zone 'UTC') + p_span) at time zone 'UTC'$utc$);
  if (select provolatile <> 'i' or prosrc like '%then p_at + p_span%' from pg_proc where oid = v_function) then
    raise exception 'clock_add no longer has the form distribute.sql rewrites: update its Citus form';
  end if;

  -- A simple CASE over a domain (`case m.severity when 'high' …`) is printed back by PostgreSQL as
  -- `case m.severity when m.severity = 'high'`, the form Citus sends to the shard, which fails there
  -- ("operator does not exist: severity = boolean"): on Citus, the searched CASE, same result.
  for v_sql in
    select pg_get_functiondef(p.oid) from pg_proc p
    where p.pronamespace = 'public'::regnamespace and p.prokind = 'f' and p.prosrc ~ 'case [a-z_]+\.severity when'
  loop
    execute regexp_replace(v_sql, 'case ([a-z_]+)\.severity when ''high'' then 1 when ''med'' then 2 else 3 end',
                           'case when \1.severity = ''high'' then 1 when \1.severity = ''med'' then 2 else 3 end', 'g');
  end loop;

  -- A function planned once per connection (`plan_cache_mode = force_generic_plan`: log_activity,
  -- ingest_activities) runs its statements with their parameters unbound, which Citus cannot plan
  -- for every statement ("could not create distributed plan"). On Citus PostgreSQL chooses
  -- (`auto`): a statement Citus plans with unbound parameters (one naming the tenant's rows by key)
  -- keeps a generic plan, and Citus keeps the shard's plan with it; for the others Citus answers a
  -- generic plan with a prohibitive cost, so they are planned with their values on each call.
  for v_function in
    select p.oid::regprocedure from pg_proc p
    where p.pronamespace = 'public'::regnamespace and 'plan_cache_mode=force_generic_plan' = any (p.proconfig)
  loop
    execute format('alter function %s set plan_cache_mode = auto', v_function);
  end loop;

  -- The sweep on Citus: one tenant a call, each statement naming it in a plain `tenant_id = p_tenant`
  -- (a delegated function's statements must filter by its tenant: "queries must filter by the
  -- distribution argument"). Without a tenant it refuses, naming the way: `PostgresStore.sweep()`
  -- sweeps tenant by tenant on Citus.
  for v_sql in
    select pg_get_functiondef(p.oid) from pg_proc p
    where p.pronamespace = 'public'::regnamespace
      and p.proname in ('sweep_alerts', 'raise_due_alerts', 'wake_snoozed_alerts', 'mark_overdue_alerts')
      and p.prosrc ~ 'p_tenant is null or'
  loop
    v_sql := regexp_replace(v_sql, '\(p_tenant is null or ([a-z_]+)\.tenant_id = p_tenant\)', '\1.tenant_id = p_tenant', 'g');
    if v_sql ~ 'FUNCTION public\.(wake_snoozed|mark_overdue)_alerts' then  -- their joins too (every row is the tenant's)
      v_sql := regexp_replace(v_sql, '\m([a-z])\.tenant_id = [a-z]\.tenant_id', '\1.tenant_id = p_tenant', 'g');
      -- the shortest overdue delay read first (a reference table's subquery is no filter by tenant)
      v_sql := regexp_replace(v_sql, E'\ndeclare\n',
        E'\ndeclare\n  v_overdue_after interval := (select min(r.overdue_after) from public.alert_rules r);\n');
      v_sql := replace(v_sql, '(select min(r.overdue_after) from public.alert_rules r)
      and', 'v_overdue_after
      and');
      -- and `timestamptz - interval` (STABLE) in a CASE taken in UTC, as clock_add below
      v_sql := replace(v_sql, 'else c.high_since <= p_now - r.overdue_after end',
                       'else c.high_since <= ((p_now at time zone ''UTC'') - r.overdue_after) at time zone ''UTC'' end');
      -- and "not one this very sweep made high" compared with the transaction's start as a value:
      -- run on the coordinator (through PostgREST), the escalation's `now()` is the coordinator's,
      -- while `now()` in the candidates, sent to the worker with the statement, is the worker's
      -- transaction's (later): the alert escalated by this sweep was marked overdue at once.
      v_sql := replace(v_sql, 'coalesce(a.escalated_at, a.created_at) < now()', 'coalesce(a.escalated_at, a.created_at) < v_now');
      if v_sql ~ 'FUNCTION public\.mark_overdue_alerts' then
        v_sql := regexp_replace(v_sql, E'\ndeclare\n', E'\ndeclare\n  v_now constant timestamptz := now();\n');
      end if;
    end if;
    -- No refresh of max_alerts' statistics: on a Citus node max_alerts is the distributed table's
    -- shell (never analysed: reltuples -1), so past 1,000 active alerts in the cluster every tenant's
    -- sweep that raised an alert would ANALYZE all 32 shards on both workers, in two-phase commit;
    -- the shards' statistics are their workers' autovacuum's. Through PostgREST (not delegated, see
    -- docs/citus.md) the call also failed: the function's owner read shards its caller had written
    -- in the same transaction ("placements that were modified in this transaction by a different user").
    v_sql := replace(v_sql, E'\n    -- Before the next steps read the active alerts: they are planned again under the new statistics.\n    perform public.refresh_alert_statistics();', '');
    if v_sql ~ 'refresh_alert_statistics' then
      raise exception 'sweep_alerts no longer has the form distribute.sql rewrites: update its Citus form';
    end if;
    -- Whether anything is due is read in the tenant's shard only (not every shard of the cluster).
    v_sql := replace(v_sql, '(select min(s.next_due_at) from public.lead_state s)',
                     '(select min(s.next_due_at) from public.lead_state s where s.tenant_id = p_tenant)');
    execute regexp_replace(v_sql, E'\nbegin\n',
      E'\nbegin\n  if p_tenant is null then\n    raise exception ''on Citus the sweep runs one tenant a call'' using errcode = ''0A000'',\n      hint = ''call it once per tenant, as PostgresStore.sweep() does'';\n  end if;\n');
  end loop;

  -- A whole row of a shard has the shard's type (`lead_activities_102077`), which no function taking
  -- the table's row type accepts ("cannot cast type lead_activities_… to lead_activities"): on Citus
  -- a row read from a table is passed, kept or returned as its columns cast to the table's type
  -- (`row(a.*)::public.lead_activities`), the same value. A function's own variables already have it.
  for v_sql in
    select pg_get_functiondef(p.oid) from pg_proc p
    where p.pronamespace = 'public'::regnamespace and p.prokind = 'f'
      and p.prosrc ~ '(activity|member|lead_erasure)_json\((\w|p\.\w)\)|alert_json\((\w\.)?a,|alert_brief\(a\)|\ma as activity\M|select s from public\.lead_state s'
      and p.prorettype <> 'trigger'::regtype
  loop
    v_sql := regexp_replace(v_sql, 'public\.activity_json\(([a-z])\)', 'public.activity_json(row(\1.*)::public.lead_activities)', 'g');
    v_sql := regexp_replace(v_sql, 'public\.activity_json\(p\.a\)', 'public.activity_json(row((p.a).*)::public.lead_activities)', 'g');
    v_sql := regexp_replace(v_sql, 'public\.member_json\(([a-z])\)', 'public.member_json(row(\1.*)::public.team_members)', 'g');
    v_sql := regexp_replace(v_sql, 'public\.lead_erasure_json\(p\.r\)', 'public.lead_erasure_json(row((p.r).*)::public.lead_erasures)', 'g');
    v_sql := replace(v_sql, 'public.alert_json(a,', 'public.alert_json(row(a.*)::public.max_alerts,');
    v_sql := regexp_replace(v_sql, 'public\.alert_json\(([a-z])\.a,', 'public.alert_json(row((\1.a).*)::public.max_alerts,', 'g');
    v_sql := replace(v_sql, 'public.alert_brief(a)', 'public.alert_brief(row(a.*)::public.max_alerts)');
    v_sql := replace(v_sql, ' a as activity', ' row(a.*)::public.lead_activities as activity');
    v_sql := replace(v_sql, 'select s from public.lead_state s', 'select row(s.*)::public.lead_state as s from public.lead_state s');
    execute v_sql;
  end loop;

  -- A truncated history forgets every summary once, from the distributed table's trigger on the
  -- coordinator: the same trigger fires on each shard, where deleting every shard's summaries would
  -- wait for the coordinator's own truncate (a distributed deadlock).
  execute replace(pg_get_functiondef('public.forget_all_alert_days()'::regprocedure),
    E'\n  delete from public.alert_day_rollups;\n',
    E'\n  if tg_table_name = ''alert_events'' then  -- not a shard of it\n    delete from public.alert_day_rollups;\n  end if;\n');

  -- The history and queue triggers on max_alerts and alert_events in their row-level form: on a
  -- shard, Citus plans a trigger's insert as a distributed statement and loses a statement trigger's
  -- transition table ("could not find named tuplestore"). Each becomes a row trigger doing the same
  -- writes for its one row, its probes naming the row's tenant and the alert passed as its columns
  -- (a shard's whole row has the shard's type). On PostgreSQL they stay set-based, one statement per
  -- statement.
  --
  -- max_alerts' history and counters, one row at a time: an `insert … values` of the event and an
  -- upsert of each counter the alert leaves or joins (in the set-based form's order), so that Citus
  -- takes each on its fast path (an `insert … select` from the row, planned through Citus and run
  -- through an intermediate result, cost 1-1.1 ms per statement on the worker when logging an
  -- activity resolves an alert; these, 0.05-0.5 ms). The same events and counts as the set-based
  -- functions of supabase/schemas/30_alerts.sql, which are checked unchanged first.
  if exists (select from pg_trigger t
             where t.tgrelid = 'public.max_alerts'::regclass and not t.tgisinternal
               and (t.tgoldtable is not null or t.tgnewtable is not null)) then
    if array(select md5(p.prosrc) from pg_proc p
             where p.pronamespace = 'public'::regnamespace
               and p.proname in ('record_changed_alerts', 'record_created_alerts', 'record_deleted_alerts')
             order by p.proname)
       <> array['81e9a429caaaef3abc81c2e2e1d3f81b', 'c0be1a4a32cccbebb889f36dc489ef6a', 'dd2cc027ebdde264817795c7c87c040b'] then
      raise exception 'max_alerts'' history triggers changed: update their single-row form in distribute.sql';
    end if;

    create or replace function public.record_created_alerts() returns trigger
    language plpgsql
    security definer
    set search_path = ''
    as $function$
    begin
      insert into public.alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor)
      values (new.tenant_id, new.id, new.lead_id, new.type, 'created', new.severity, 'system');
      if new.resolved_at is null then
        insert into public.alert_counts as c (tenant_id, severity, type, active)
        values (new.tenant_id, new.severity, new.type, 1)
        on conflict (tenant_id, severity, type) do update set active = c.active + excluded.active;
      end if;
      return null;
    end
    $function$;

    create or replace function public.record_changed_alerts() returns trigger
    language plpgsql
    security definer
    set search_path = ''
    as $function$
    declare
      v_event text := case
        when old.resolved_at is null and new.resolved_at is not null then 'resolved'
        when old.resolved_at is not null and new.resolved_at is null then 'reopened'
        when new.severity_rank < old.severity_rank then 'escalated'
      end;
      v_count record;
    begin
      if v_event is not null then
        insert into public.alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor)
        values (new.tenant_id, new.id, new.lead_id, new.type, v_event, new.severity,
                case when v_event = 'resolved' then new.resolved_by else 'system' end);
      end if;
      if old.resolved_at is null and new.resolved_at is null and old.severity = new.severity and old.type = new.type then
        return null;  -- counted where it was
      end if;
      for v_count in  -- the counter it leaves and the one it joins, in (severity, type) order
        select d.severity, d.type, d.delta
        from (values (old.severity, old.type, -1, old.resolved_at is null),
                     (new.severity, new.type, 1, new.resolved_at is null)) d(severity, type, delta, active)
        where d.active
        order by d.severity, d.type
      loop
        insert into public.alert_counts as c (tenant_id, severity, type, active)
        values (new.tenant_id, v_count.severity, v_count.type, v_count.delta)
        on conflict (tenant_id, severity, type) do update set active = c.active + excluded.active;
      end loop;
      return null;
    end
    $function$;

    create or replace function public.record_deleted_alerts() returns trigger
    language plpgsql
    security definer
    set search_path = ''
    as $function$
    begin
      if old.resolved_at is null then
        insert into public.alert_counts as c (tenant_id, severity, type, active)
        values (old.tenant_id, old.severity, old.type, -1)
        on conflict (tenant_id, severity, type) do update set active = c.active + excluded.active;
      end if;
      return null;
    end
    $function$;
  end if;

  -- The others with `(select new.*)` for the transition table; the queue triggers' probe of the
  -- tenant's endpoints or members a plain read of one row (a subquery is planned through Citus on
  -- each call, 0.1-0.2 ms; a read by the tenant, on its fast path, 0.04).
  for v_trigger in
    select t.tgname, t.tgrelid::regclass as tbl, t.tgfoid, pg_get_triggerdef(t.oid) as def
    from pg_trigger t
    where t.tgrelid in ('public.max_alerts'::regclass, 'public.alert_events'::regclass)
      and not t.tgisinternal and (t.tgoldtable is not null or t.tgnewtable is not null)
  loop
    v_sql := regexp_replace(pg_get_functiondef(v_trigger.tgfoid), '\m(new|old)_(alerts|events)\M', '(select \1.*)', 'g');
    v_sql := regexp_replace(v_sql,
      'if not exists \(select from (public\.webhook_endpoints w|public\.team_members m) where ([a-z])\.(enabled|whatsapp)\) then',
      E'perform 1 from \\1 where \\2.tenant_id = new.tenant_id and \\2.\\3 limit 1;\n  if not found then');
    if v_sql ~ 'if not exists \(select from public\.(webhook_endpoints|team_members)' then
      raise exception 'the queue triggers'' probe changed: update its Citus form in distribute.sql';
    end if;
    v_sql := replace(v_sql, 'public.alert_json(a,', 'public.alert_json(row(a.*)::public.max_alerts,');
    execute v_sql;
    execute format('drop trigger %I on %s', v_trigger.tgname, v_trigger.tbl);
    execute regexp_replace(v_trigger.def, 'REFERENCING .* FOR EACH STATEMENT', 'FOR EACH ROW');
  end loop;

  -- The nightly jobs whose null tenant means every tenant (retention, notification pruning, the
  -- summaries) run on the coordinator, not delegated: Citus 14.0.1 delegates a call by hashing its
  -- tenant, and a null one crashes the coordinator (signal 11 in FindShardInterval). There each
  -- statement is planned with its values: one tenant's statement goes to its worker, all tenants'
  -- to every shard (retention's leave to delete history: see below).
  for v_function in
    select p.oid::regprocedure from pg_proc p
    where p.pronamespace = 'public'::regnamespace and p.proname = any (v_every_tenant)
  loop
    execute format('alter function %s set plan_cache_mode = force_custom_plan', v_function);
  end loop;

  -- The leave to rewrite history (`leadwatch.history_maintenance`: retention, merging and erasing a
  -- lead) is sent to the shards as SET LOCAL, from a DO block: set_config() stays on the node that
  -- runs it, and Citus forwards a SET LOCAL made in a transaction block, a procedure or a DO block,
  -- not one made by a function called on its own. Delegated, the function runs on the tenant's
  -- worker and the setting is local there; run on the coordinator (retention; every call through
  -- PostgREST), the shard's refusal of a history change would not see it.
  for v_sql in
    select pg_get_functiondef(p.oid) from pg_proc p
    where p.pronamespace = 'public'::regnamespace and p.prosrc like '%set_config(''leadwatch.history_maintenance''%'
  loop
    execute regexp_replace(v_sql,
      'perform set_config\(''leadwatch\.history_maintenance'', ''(on|off)'', true\);',
      $$execute 'do $set$ begin set local citus.propagate_set_commands = ''local''; '
          'set local leadwatch.history_maintenance = \1; end $set$';$$, 'g');
  end loop;

  -- A rejected message's id answered from a JSON object built without a STABLE function (Citus
  -- refuses non-IMMUTABLE functions in RETURNING; jsonb_build_object is STABLE): the same object.
  for v_sql in
    select pg_get_functiondef(p.oid) from pg_proc p
    where p.pronamespace = 'public'::regnamespace and p.proname in ('reject_email', 'reject_greenapi_notification')
  loop
    execute replace(v_sql, $$returning jsonb_build_object('id', id)$$, $$returning ('{"id": "' || id::text || '"}')::jsonb$$);
  end loop;

  -- The deliverers' claims on Citus: one statement locking the due rows of every shard is refused
  -- ("could not run distributed query with FOR UPDATE/SHARE commands"), so the claim takes the
  -- tenants with something due, the longest waiting first, and claims each one's rows in a statement
  -- naming it (run on its worker), until the batch is full. The same rows, the same lease.
  for v_function, v_table in
    select f::regprocedure, t from (values
      ('public.claim_webhook_deliveries(timestamptz, integer, integer)', 'webhook_deliveries'),
      ('public.claim_member_pushes(timestamptz, integer, integer)', 'member_pushes')) v(f, t)
  loop
    v_sql := pg_get_functiondef(v_function);
    if v_sql !~ 'v_tenant' then
      v_sql := regexp_replace(v_sql, '([a-z])\.next_attempt_at <= p_now', '\1.tenant_id = v_tenant and \1.next_attempt_at <= p_now');
      v_sql := regexp_replace(v_sql, '\m([a-z]+)\.tenant_id = ([a-z]+)\.tenant_id', '\1.tenant_id = v_tenant and \2.tenant_id = v_tenant', 'g');
      v_sql := replace(v_sql, 'limit p_limit', 'limit p_limit - jsonb_array_length(v_claimed)');
      v_sql := replace(v_sql, 'into v_claimed', 'into v_some');
      v_sql := replace(v_sql, E'\ndeclare\n', E'\ndeclare\n  v_tenant text;\n  v_some jsonb;\n');
      v_sql := replace(v_sql, E'\nbegin\n', format(E'\nbegin\n  v_claimed := ''[]'';\n'
        '  for v_tenant in\n'
        '    select x.tenant_id from public.%I x\n'
        '    where x.status in (''pending'', ''sending'') and x.next_attempt_at <= p_now\n'
        '    group by x.tenant_id order by min(x.next_attempt_at)\n'
        '  loop\n'
        '  exit when jsonb_array_length(v_claimed) >= p_limit;\n', v_table));
      v_sql := replace(v_sql, E';\n  return v_claimed;', E';\n  v_claimed := v_claimed || v_some;\n  end loop;\n  return v_claimed;');
      execute v_sql;
    end if;
  end loop;

  -- Recording the outcomes: `timestamptz + interval` (STABLE) next to a row's values is refused in
  -- a distributed update; taken in UTC, as clock_add above: the same value.
  for v_sql in
    select pg_get_functiondef(p.oid) from pg_proc p
    where p.pronamespace = 'public'::regnamespace and p.proname in ('record_webhook_attempts', 'record_member_pushes')
  loop
    v_sql := regexp_replace(v_sql, 'p_now \+ public\.webhook_retry_delay\(([a-z.]+)\)',
                            '((p_now at time zone ''UTC'') + public.webhook_retry_delay(\1)) at time zone ''UTC''', 'g');
    -- and the attempt's log entry (jsonb_build_object is STABLE) built with the outcome, on the coordinator
    v_sql := replace(v_sql, 'with outcome as (', 'with outcome as materialized (');
    if v_sql !~ ' as entry,' then
      v_sql := replace(v_sql, 'left(r.error, 200) as error,',
        'left(r.error, 200) as error, jsonb_build_object(''attempt'', r.attempt, ''at'', p_now, ''status'', r.status, ''error'', left(r.error, 200)) as entry,');
    end if;
    v_sql := regexp_replace(v_sql, '\|\| jsonb_build_object\(''attempt'', o\.attempt, [^\n]*\)\n', E'|| o.entry\n');
    execute v_sql;
  end loop;

  -- A page of alerts (a subquery stopped by its limit) joined to its leads under row-level security
  -- fails on the worker ("failed to postpone qual containing lateral reference") when the join
  -- names the page's tenant column: it names the function's tenant instead, the same rows (every
  -- row of the page is the tenant's). The user's active list and the alerts' export.
  for v_sql in
    select pg_get_functiondef(p.oid) from pg_proc p
    where p.pronamespace = 'public'::regnamespace and p.proname in ('list_active_alerts', 'export_alerts')
  loop
    v_sql := regexp_replace(v_sql, 'left join public\.leads l on l\.tenant_id = (\(x\.alert\)|a)\.tenant_id',
                            'left join public.leads l on l.tenant_id = p_tenant', 'g');
    -- and its whole alert row kept as its columns (read under row-level security, it has the shard's type)
    execute replace(v_sql, 'select a as alert', 'select row(a.*)::public.max_alerts as alert');
  end loop;

  -- Acting on alerts (act_on_alerts; snooze_alert calls it) in a form a forced delegation runs: its
  -- statements name the function's tenant (`tenant_id = p_tenant`, the same rows: every alert asked
  -- for is the tenant's), and the snooze events are written by a statement of their own after the
  -- one of modifying CTEs (an insert fed by a modifying CTE is executed through the coordinator,
  -- which a delegated function refuses: "queries must filter by the distribution argument"). Forced,
  -- a user's call (a transaction) runs on the worker like the others, with the rights of the
  -- function's owner (on the coordinator, its statements reached the shards as the user's role).
  v_sql := pg_get_functiondef('public.act_on_alerts(text, text, jsonb, timestamptz, text)'::regprocedure);
  if v_sql ~ 'snooze_events as' then
    v_sql := replace(v_sql, 'where (s.tenant_id, s.lead_id) in (', 'where s.tenant_id = p_tenant and (s.tenant_id, s.lead_id) in (');
    v_sql := replace(v_sql, 'a.tenant_id = q.tenant_id and a.id = q.alert_id', 'a.tenant_id = p_tenant and a.id = q.alert_id');
    v_sql := replace(v_sql, 'where s.tenant_id = r.tenant_id and s.lead_id = r.lead_id', 'where s.tenant_id = p_tenant and s.lead_id = r.lead_id');
    v_sql := regexp_replace(v_sql, '\n  snooze_events as \(\n.*?\n  \),\n', E'\n');
    v_sql := replace(v_sql, E'\n  from answered a;\n', E'\n  from answered a;\n'
      '  if p_action = ''snooze'' then  -- the snooze events\n'
      '    insert into public.alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor)\n'
      '    select a.tenant_id, a.id, a.lead_id, a.type, ''snoozed'', a.severity, v_actor\n'
      '    from public.max_alerts a\n'
      '    where a.tenant_id = p_tenant\n'
      '      and a.id in (select (r ->> ''id'')::uuid from jsonb_array_elements(v_result -> ''results'') r\n'
      '                   where r ->> ''result'' = ''done'');\n'
      '  end if;\n');
    if v_sql ~ 'snooze_events as|q\.tenant_id|r\.tenant_id' then
      raise exception 'act_on_alerts no longer has the form distribute.sql rewrites: update its Citus form';
    end if;
    execute v_sql;
  end if;

  -- A snooze's answer (snooze_alert reads the alert act_on_alerts has just snoozed) read with the
  -- rights of the function's owner, as act_on_alerts writes it: run on the coordinator (every call
  -- through PostgREST), Citus refuses to read as the caller the shard its owner wrote in the same
  -- transaction ("placements that were modified in this transaction by a different user"). The
  -- same rows: the alert is read only when act_on_alerts answered `done`, which it answers only for
  -- an alert the caller may act on (assert_acts_in and can_see_lead, from the caller's claims).
  alter function public.snooze_alert(text, uuid, timestamptz, text) security definer;

  -- The summarised analytics with the rights of their owner, as summarise_alert_days which they
  -- call: run on the coordinator (every call through PostgREST), reading as the caller the shards
  -- the owner has just summarised into is refused, as above. The same figures: whose figures they
  -- are (the scope) comes from the caller's claims, the summaries and the live rows are read for
  -- that scope only, and the open alerts counted by age are the scope's too (row-level security
  -- did that for the caller: the tenant's for its staff and the service, an agent's own leads',
  -- none for anyone else).
  v_function := 'public.alert_analytics(text, date, date, text)'::regprocedure;
  v_sql := pg_get_functiondef(v_function);
  if v_sql !~ 'l.owner_id = v_scope' then
    v_sql := replace(v_sql, E'\n          where a.tenant_id = p_tenant and a.resolved_at is null) o',
      E'\n          where a.tenant_id = p_tenant and a.resolved_at is null\n'
      '            and (v_scope = ''*'' or exists (select from public.leads l\n'
      '                                           where l.tenant_id = p_tenant and l.lead_id = a.lead_id\n'
      '                                             and l.owner_id = v_scope))) o');
    if v_sql !~ 'l.owner_id = v_scope' then
      raise exception 'alert_analytics no longer has the form distribute.sql rewrites: update its Citus form';
    end if;
    execute v_sql;
  end if;
  -- and in working time (which calls them, then reads the resolved alerts of that scope only)
  alter function public.alert_analytics(text, date, date, text) security definer;
  alter function public.alert_analytics_in_working_time(text, date, date, text) security definer;

  -- An alert's history in the order it happened: events are ordered by id, and on Citus the
  -- coordinator and each worker draw ids from their own range of the sequence (a worker's starts at
  -- its group number shifted left 48 bits), so an event the coordinator routed (a function run
  -- there: every call through PostgREST) and one a trigger wrote on the worker were out of order.
  -- Every event's id is drawn on the worker holding its tenant, by a trigger on the shard: one
  -- sequence per tenant again.
  create or replace function public.alert_event_id_on_its_worker()
  returns trigger
  language plpgsql
  security definer  -- the sequence is the owner's; inserts come from definer functions and triggers
  set search_path = ''
  as $function$
  begin
    new.id := pg_catalog.nextval('public.alert_events_id_seq'::pg_catalog.regclass);
    return new;
  end
  $function$;
  revoke execute on function public.alert_event_id_on_its_worker() from public;
  create or replace trigger alert_events_id_on_its_worker before insert on public.alert_events
    for each row execute function public.alert_event_id_on_its_worker();

  -- The API's claims on the workers. PostgREST sets the role and `request.jwt.claims` with
  -- set_config(), which Citus does not forward: a delegated call, and a shard's row-level security,
  -- would run on the worker without claims. PostgREST calls its `db-pre-request` function at the
  -- start of every request, after setting them: this one sets the claims again as SET LOCAL, which
  -- Citus forwards to every worker the transaction reaches (made inside a function too). No `set`
  -- clause: it would undo the SET LOCAL when the function returns.
  create or replace function public.claims_to_workers()
  returns void
  language plpgsql
  as $function$
  declare
    v_claims text := pg_catalog.current_setting('request.jwt.claims', true);
  begin
    execute $$set local citus.propagate_set_commands = 'local'$$;
    if v_claims is not null then
      execute pg_catalog.format('set local request.jwt.claims = %L', v_claims);
    end if;
  end
  $function$;
  revoke execute on function public.claims_to_workers() from public;
  grant execute on function public.claims_to_workers() to anon, authenticated, service_role;

  -- The tenants a sweep judges (every tenant with leads), for the stores' sweep of every tenant on
  -- Citus: one call per tenant (a statement locking the due rows of every shard is refused, and a
  -- null tenant crashes Citus 14.0.1's delegation). Created here only: the Supabase store, which
  -- reaches the database through PostgREST, knows it is on Citus when PostgREST knows this function.
  create or replace function public.sweep_tenants()
  returns jsonb
  language sql
  stable
  set search_path = ''
  as $function$
    select coalesce(jsonb_agg(t.tenant_id order by t.tenant_id), '[]'::jsonb)
    from (select distinct s.tenant_id from public.lead_state s) t
  $function$;
  revoke execute on function public.sweep_tenants() from public;
  grant execute on function public.sweep_tenants() to service_role;

  -- Every function reaches the workers (one that names a table's row type was created while that
  -- table was still local, so it stayed on the coordinator); the tenant-scoped ones are delegated.
  for v_function, v_delegated in
    select p.oid::regprocedure,
           p.proargnames[1] = 'p_tenant' and p.proargtypes[0] = 'text'::regtype and p.prorettype <> 'trigger'::regtype
           and p.prolang = (select oid from pg_language where lanname = 'plpgsql')
           and p.proname <> all (v_every_tenant)
    from pg_proc p
    where p.pronamespace = 'public'::regnamespace and p.prokind = 'f'
      and not exists (select from pg_depend d where d.objid = p.oid and d.deptype = 'e')  -- extensions' own
    order by 2
  loop
    if v_delegated then
      perform create_distributed_function(v_function, '$1', colocate_with := 'leads', force_delegation := true);
    else
      perform create_distributed_function(v_function);
    end if;
  end loop;

  -- The workers grant each function as the coordinator does: Citus does not copy a revoke from
  -- PUBLIC (nor the grants of a function re-created above), and the coordinator delegates a call
  -- without checking EXECUTE. Re-issued here, each grant and revoke is forwarded to the workers.
  for v_function, v_sql in
    select p.oid::regprocedure,
           case when aclcontains(p.proacl, makeaclitem(0, p.proowner, 'EXECUTE', false)) then ''
                else format('revoke execute on function %s from public;', p.oid::regprocedure) end
           || coalesce((select string_agg(format('grant execute on function %s to %I;', p.oid::regprocedure,
                                                 g.grantee::regrole::text), ' ')
                        from aclexplode(p.proacl) g where g.grantee not in (0, p.proowner)), '')
    from pg_proc p
    where p.pronamespace = 'public'::regnamespace and p.prokind = 'f' and p.proacl is not null
      and not exists (select from pg_depend d where d.objid = p.oid and d.deptype = 'e')
  loop
    if v_sql <> '' then
      execute v_sql;
    end if;
  end loop;
end
$distribute$;
