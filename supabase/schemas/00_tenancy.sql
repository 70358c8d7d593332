-- Tenancy: the vocabulary every other file uses (types, errors, ids), who the caller is, and
-- what each role may run by default.

-- Function bodies are checked once every file has run (their tables may live in a later file).
set check_function_bodies = off;

-- Types -------------------------------------------------------------------------------------------

create domain public.alert_type as text
  check (value in ('NoContact7d', 'NoReply3d', 'StaleLead30d', 'HighValueRisk', 'HotLead24h', 'PreferredChannel'));

create domain public.severity as text
  check (value in ('low', 'med', 'high'));

create domain public.channel as text
  check (value in ('whatsapp', 'email', 'call', 'other'));

-- Grants and row-level security -------------------------------------------------------------------

-- No function is executable by everyone: each one below grants execute to the roles that need it.
-- (PUBLIC's EXECUTE is a global default, so it is revoked globally; Supabase's grants to anon and
-- authenticated are defaults of the public schema.)
alter default privileges revoke execute on functions from public;

alter default privileges in schema public revoke execute on functions from anon, authenticated;

-- For what the migrating role creates later: nothing for anyone until a migration grants it.
alter default privileges in schema public revoke all on tables from public, anon, authenticated, service_role;

alter default privileges in schema public revoke all on sequences from public, anon, authenticated, service_role;

alter default privileges in schema public revoke all on functions from public, anon, authenticated, service_role;

-- Functions ---------------------------------------------------------------------------------------

/**
 * The tenant of the signed-in caller, read from the JWT's `app_metadata` (which only the service
 * can write), never from `user_metadata` (which the user can write).
 */
create or replace function public.current_tenant() returns text
language sql stable
as $$
  select nullif((select auth.jwt()) -> 'app_metadata' ->> 'tenant_id', '')
$$;
grant execute on function public.current_tenant() to authenticated, service_role;

/** The caller's leadwatch role (`platform_admin`, `admin`, `manager`, `agent`) from `app_metadata`. */
create or replace function public.current_app_role() returns text
language sql stable
as $$
  select nullif((select auth.jwt()) -> 'app_metadata' ->> 'role', '')
$$;
grant execute on function public.current_app_role() to authenticated, service_role;

/**
 * Is the caller trusted to name any tenant? The service (the `service_role` key through the REST
 * API, or a direct database connection, which carries no user claims) is; a user or anon is not.
 */
create or replace function public.is_trusted_caller() returns boolean
language sql stable
as $$
  select coalesce((select auth.jwt()) ->> 'role', 'service_role') not in ('anon', 'authenticated')
$$;
grant execute on function public.is_trusted_caller() to anon, authenticated, service_role;

/** Does the caller see every tenant? The service and platform staff do. */
create or replace function public.sees_all_tenants() returns boolean
language sql stable
as $$
  select (select public.is_trusted_caller()) or (select public.current_app_role()) = 'platform_admin'
$$;
grant execute on function public.sees_all_tenants() to authenticated, service_role;

/** Does the caller see every lead of their tenant? Admins and managers do; agents see their own. */
create or replace function public.sees_whole_tenant() returns boolean
language sql stable
as $$
  select (select public.current_app_role()) in ('admin', 'manager')
$$;
grant execute on function public.sees_whole_tenant() to authenticated, service_role;

/**
 * Raise one of leadwatch's errors. The SQLSTATE is the contract with Python (never the text):
 * LW404 not found, LW403 forbidden, LW409 conflict, LW422 invalid (detail names the field).
 * Volatile, as every function that raises: an immutable call with constant arguments may be
 * evaluated ahead of time (when a statement is planned, or checked), raising where nothing failed.
 */
create or replace function public.raise_error(p_code text, p_message text, p_detail text default null) returns void
language plpgsql volatile
set search_path = ''
as $$
begin
  raise exception using errcode = p_code, message = p_message, detail = coalesce(p_detail, '');
end
$$;
grant execute on function public.raise_error(text, text, text) to authenticated, service_role;

/**
 * A UUID whose first 48 bits are the creation time in milliseconds (version 7, RFC 9562), so
 * that rows inserted one after another land next to each other in their primary-key index
 * instead of on a random page. Plain SQL: PostgreSQL only has uuidv7() from version 18.
 */
create or replace function public.uuid_v7() returns uuid
language sql volatile
as $$
  select encode(
    set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                            placing substring(int8send((extract(epoch from clock_timestamp()) * 1000)::bigint) from 3)
                            from 1 for 6), 52, 1), 53, 1),
    'hex')::uuid
$$;
grant execute on function public.uuid_v7() to authenticated, service_role;

/** Does the database answer? What `GET /health` asks, through whichever store is configured. */
create or replace function public.ping() returns boolean
language sql stable
as $$
  select true
$$;
grant execute on function public.ping() to service_role;

/**
 * Refuse a page request leadwatch would not make: a limit outside 1..1000 (LW422 `limit`), or a
 * cursor that is not an object of exactly `p_keys` with values of their types — `r` a severity
 * rank 1..3, `c` and `o` times, `i` a UUID in canonical form (LW422 `cursor`).
 */
create or replace function public.check_page(p_limit integer, p_cursor jsonb, p_keys text[]) returns void
language plpgsql stable
set search_path = ''
as $$
begin
  if p_limit is null or p_limit not between 1 and 1000 then
    perform public.raise_error('LW422', 'limit must be between 1 and 1000', 'limit');
  end if;
  if p_cursor is null then
    return;
  end if;
  if jsonb_typeof(p_cursor) is distinct from 'object'
     or (select array_agg(k order by k) from jsonb_object_keys(p_cursor) k)
        is distinct from (select array_agg(k order by k) from unnest(p_keys) k)
     or (p_cursor ? 'r' and (p_cursor ->> 'r') not in ('1', '2', '3'))
     or (p_cursor ? 'i' and (jsonb_typeof(p_cursor -> 'i') <> 'string'
                             or (p_cursor ->> 'i') !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'))
     or exists (select from unnest(array['c', 'o']) k where p_cursor ? k and jsonb_typeof(p_cursor -> k) <> 'string')
  then
    perform public.raise_error('LW422', 'invalid cursor', 'cursor');
  end if;
  begin  -- a time's form is the one thing a pattern cannot settle: cast it here, where failing is ours to name
    perform (p_cursor ->> k)::timestamptz from unnest(array['c', 'o']) k where p_cursor ? k;
  exception when others then
    perform public.raise_error('LW422', 'invalid cursor', 'cursor');
  end;
end
$$;
grant execute on function public.check_page(integer, jsonb, text[]) to authenticated, service_role;
