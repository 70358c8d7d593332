-- What Supabase provides on its platform, recreated for a plain PostgreSQL (the embedded default,
-- self-hosted, the tests) so that supabase/migrations/ runs unchanged everywhere.
-- `leadwatch migrate` applies this file only where `auth.jwt()` is missing; it lives outside
-- supabase/migrations/ so that `supabase db push` never sends it to a Supabase project.

do $$
begin
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
end
$$;

create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;
grant usage on schema public to anon, authenticated, service_role;

/** The claims of the caller's JWT, as PostgREST sets them in `request.jwt.claims` (Supabase's own definition). */
create or replace function auth.jwt() returns jsonb
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), ''),
    '{}'
  )::jsonb
$$;

/** The caller's user id (the JWT's `sub`), or null. */
create or replace function auth.uid() returns uuid
language sql stable
as $$
  select nullif(auth.jwt() ->> 'sub', '')::uuid
$$;

/** The caller's database role as the JWT names it (`anon`, `authenticated`, `service_role`). */
create or replace function auth.role() returns text
language sql stable
as $$
  select nullif(auth.jwt() ->> 'role', '')
$$;

grant execute on function auth.jwt(), auth.uid(), auth.role() to anon, authenticated, service_role;
