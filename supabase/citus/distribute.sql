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

do $distribute$
declare
  v_table text;
  v_policy record;
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

  -- clock_add in its Citus form: IMMUTABLE, its calendar-clock step taken in UTC. Citus refuses a
  -- STABLE function in `on conflict do update set` or in a CASE of a distributed write, and
  -- `timestamptz + interval` is STABLE only because a day's length follows the session's time
  -- zone, which for leadwatch is UTC (the stores connect with it, as Supabase does): the same value.
  create or replace function public.clock_add(p_cal public.business_calendars, p_business boolean, p_at timestamptz,
                                              p_span interval)
  returns timestamptz
  language sql immutable
  as $clock$
    select case
      when not coalesce(p_business, false) or p_at is null or p_span is null
        then ((p_at at time zone 'UTC') + p_span) at time zone 'UTC'
      when extract(epoch from p_span) % 86400 = 0
        then public.add_working_days(p_cal.time_zone, p_cal.opens, p_cal.closes, p_cal.day_minutes, p_cal.holidays,
                                     p_at, (extract(epoch from p_span) / 86400)::integer)
      else public.add_working_time(p_cal.time_zone, p_cal.opens, p_cal.closes, p_cal.day_minutes, p_cal.holidays,
                                   p_at, p_span)
    end
  $clock$;

  -- Every function reaches the workers (one that names a table's row type was created while that
  -- table was still local, so it stayed on the coordinator); the tenant-scoped ones are delegated.
  for v_function, v_delegated in
    select p.oid::regprocedure,
           p.proargnames[1] = 'p_tenant' and p.proargtypes[0] = 'text'::regtype and p.prorettype <> 'trigger'::regtype
           and p.prolang = (select oid from pg_language where lanname = 'plpgsql')
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
end
$distribute$;
