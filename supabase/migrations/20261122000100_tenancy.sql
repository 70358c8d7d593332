-- Tenancy: the vocabulary every other migration uses, and who may run what.

-- Types -------------------------------------------------------------------------------------------

create domain public.alert_type as text
  check (value in ('NoContact7d', 'NoReply3d', 'StaleLead30d', 'HighValueRisk', 'HotLead24h', 'PreferredChannel'));

create domain public.severity as text
  check (value in ('low', 'med', 'high'));

create domain public.channel as text
  check (value in ('whatsapp', 'email', 'call', 'other'));

-- Grants ------------------------------------------------------------------------------------------

-- No function is executable by everyone: each one below grants execute to the roles that need it.
alter default privileges in schema public revoke execute on functions from public;
alter default privileges in schema public revoke execute on functions from anon, authenticated;

-- Functions ---------------------------------------------------------------------------------------

/**
 * The tenant of the signed-in caller, read from the JWT's `app_metadata` (which only the service
 * can write), never from `user_metadata` (which the user can write).
 */
create function public.current_tenant() returns text
language sql stable
set search_path = ''
as $$
  select nullif((select auth.jwt()) -> 'app_metadata' ->> 'tenant_id', '')
$$;
grant execute on function public.current_tenant() to authenticated, service_role;

/** Does the signed-in caller belong to this tenant? The test behind every row-level policy. */
create function public.is_member_of(p_tenant text) returns boolean
language sql stable
set search_path = ''
as $$
  select p_tenant = (select public.current_tenant())
$$;
grant execute on function public.is_member_of(text) to authenticated, service_role;

/**
 * Raise one of leadwatch's errors. The SQLSTATE is the contract with Python (never the text):
 * LW404 not found, LW403 forbidden, LW409 conflict, LW422 invalid (detail names the field).
 */
create function public.raise_error(p_code text, p_message text, p_detail text default null) returns void
language plpgsql immutable
set search_path = ''
as $$
begin
  raise exception using errcode = p_code, message = p_message, detail = coalesce(p_detail, '');
end
$$;
grant execute on function public.raise_error(text, text, text) to authenticated, service_role;

/** Does the database answer? What `GET /health` asks, through whichever store is configured. */
create function public.ping() returns boolean
language sql stable
set search_path = ''
as $$
  select true
$$;
grant execute on function public.ping() to service_role;
