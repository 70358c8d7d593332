"""supabase/schemas/ (read by concept) and supabase/migrations/ (what deploys) build the same database."""

from __future__ import annotations

import difflib
import tomllib
import uuid
from pathlib import Path

import psycopg
import pytest
from leadwatch.migrate import BOOTSTRAP, MIGRATIONS_DIR, SEED, migrate

SUPABASE = Path(__file__).resolve().parents[1] / "supabase"

# Each query lists one kind of object as text rows, ordered, so that two databases compare line by line.
# Owners are left out (both databases are built by the same role); the migration runner's own history is too.
CATALOG = {
    "schemas": """
        select n.nspname || ' acl=' || coalesce(n.nspacl::text, '-') || ' comment=' || coalesce(d.description, '-')
        from pg_namespace n left join pg_description d on d.objoid = n.oid and d.classoid = 'pg_namespace'::regclass
        where n.nspname not like 'pg\\_%' and n.nspname not in ('information_schema', 'supabase_migrations')
        order by 1""",
    "types": """
        select format_type(t.oid, null) || ' ' || t.typtype::text
          || ' base=' || coalesce(format_type(nullif(t.typbasetype, 0), null), '-')
          || ' notnull=' || t.typnotnull || ' default=' || coalesce(t.typdefault, '-')
          || ' acl=' || coalesce(t.typacl::text, '-')
          || ' attrs=' || coalesce((select string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', '
                                                      order by a.attnum)
                                     from pg_attribute a
                                     where a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped), '-')
          || ' checks=' || coalesce((select string_agg(c.conname || ' ' || pg_get_constraintdef(c.oid), ', '
                                                       order by c.conname)
                                      from pg_constraint c where c.contypid = t.oid), '-')
        from pg_type t join pg_namespace n on n.oid = t.typnamespace
        where n.nspname in ('public', 'auth') and t.typtype in ('d', 'e', 'c')
          and (t.typtype <> 'c' or (select relkind from pg_class where oid = t.typrelid) = 'c')
        order by 1""",
    "relations": """
        select c.oid::regclass::text || ' kind=' || c.relkind::text
          || ' rls=' || c.relrowsecurity || ' force=' || c.relforcerowsecurity
          || ' options=' || coalesce(c.reloptions::text, '-') || ' acl=' || coalesce(c.relacl::text, '-')
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname in ('public', 'auth') and c.relkind in ('r', 'v', 'm', 'S', 'p', 'f')
        order by 1""",
    "columns": """
        select c.oid::regclass::text || ' #' || row_number() over (partition by c.oid order by a.attnum)
          || ' ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' notnull=' || a.attnotnull
          || ' default=' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '-') || ' identity=' || a.attidentity::text
          || ' generated=' || a.attgenerated::text || ' collation=' || a.attcollation
          || ' acl=' || coalesce(a.attacl::text, '-')
        from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
        left join pg_attrdef ad on ad.adrelid = a.attrelid and ad.adnum = a.attnum
        where n.nspname in ('public', 'auth') and c.relkind in ('r', 'v', 'm', 'p', 'f')
          and a.attnum > 0 and not a.attisdropped
        order by c.oid::regclass::text, a.attnum""",
    "constraints": """
        select c.conrelid::regclass::text || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid)
          || ' deferrable=' || c.condeferrable || ' validated=' || c.convalidated
        from pg_constraint c join pg_namespace n on n.oid = c.connamespace
        where n.nspname in ('public', 'auth') and c.conrelid <> 0
        order by 1""",
    "indexes": """
        select pg_get_indexdef(i.indexrelid) from pg_index i join pg_class c on c.oid = i.indexrelid
        join pg_namespace n on n.oid = c.relnamespace where n.nspname in ('public', 'auth')
        order by 1""",
    "views": """
        select c.oid::regclass::text || E'\\n' || pg_get_viewdef(c.oid)
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname in ('public', 'auth') and c.relkind in ('v', 'm')
        order by 1""",
    "sequences": """
        select s.seqrelid::regclass::text || ' ' || format_type(s.seqtypid, null) || ' start=' || s.seqstart
          || ' increment=' || s.seqincrement || ' min=' || s.seqmin || ' max=' || s.seqmax || ' cache=' || s.seqcache
          || ' cycle=' || s.seqcycle
        from pg_sequence s join pg_class c on c.oid = s.seqrelid join pg_namespace n on n.oid = c.relnamespace
        where n.nspname in ('public', 'auth')
        order by 1""",
    "functions": """
        select p.oid::regprocedure::text || ' volatility=' || p.provolatile::text || ' security_definer=' || p.prosecdef
          || ' leakproof=' || p.proleakproof || ' strict=' || p.proisstrict || ' parallel=' || p.proparallel::text
          || ' config=' || coalesce(p.proconfig::text, '-') || ' acl=' || coalesce(p.proacl::text, '-')
          || E'\\n' || case when p.prokind in ('a', 'w') then p.prosrc else pg_get_functiondef(p.oid) end
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname in ('public', 'auth')
        order by 1""",
    "triggers": """
        select pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
        from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace
        where n.nspname in ('public', 'auth') and not t.tgisinternal
        order by 1""",
    "policies": """
        select schemaname || '.' || tablename || ' "' || policyname || '" ' || permissive || ' ' || cmd
          || ' to ' || roles::text || ' using ' || coalesce(qual, '-') || ' check ' || coalesce(with_check, '-')
        from pg_policies where schemaname in ('public', 'auth')
        order by 1""",
    "default privileges": """
        select coalesce(n.nspname, '(global)') || ' ' || d.defaclobjtype::text || ' ' || d.defaclacl::text
        from pg_default_acl d left join pg_namespace n on n.oid = d.defaclnamespace
        order by 1""",
    "comments": """
        select d.classoid::regclass::text || ' ' || pg_describe_object(d.classoid, d.objoid, d.objsubid)
          || ': ' || d.description
        from pg_description d
        where (d.classoid = 'pg_class'::regclass
               and d.objoid in (select c.oid from pg_class c join pg_namespace n on n.oid = c.relnamespace
                                where n.nspname in ('public', 'auth')))
           or (d.classoid = 'pg_proc'::regclass
               and d.objoid in (select p.oid from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                                where n.nspname in ('public', 'auth')))
           or (d.classoid = 'pg_type'::regclass
               and d.objoid in (select t.oid from pg_type t join pg_namespace n on n.oid = t.typnamespace
                                where n.nspname in ('public', 'auth')))
           or d.classoid in ('pg_constraint'::regclass, 'pg_trigger'::regclass, 'pg_policy'::regclass)
        order by 1""",
    "extensions": "select extname || ' ' || extversion from pg_extension order by 1",
    # The rows the schema itself carries: the rules' defaults.
    "default rules": "select to_jsonb(r)::text from public.alert_rules r order by r.tenant_id, r.type",
}


# Kinds whose rows are whole definitions, each headed by the object's name: diffed object by object.
WHOLE_OBJECTS = ("views", "functions")


def schema_files(config: Path = SUPABASE / "config.toml") -> list[Path]:
    """The files `[db.migrations] schema_paths` names, in its order (a glob expands sorted), each once."""
    paths = tomllib.loads(config.read_text())["db"]["migrations"]["schema_paths"]
    files: list[Path] = []
    for pattern in paths:
        matches = sorted(config.parent.glob(pattern)) if any(c in pattern for c in "*?[") else [config.parent / pattern]
        for path in matches:
            if path.resolve() not in {f.resolve() for f in files}:
                files.append(path)
    return files


def apply_schemas(database_url: str, files: list[Path]) -> None:
    """What a fresh database built from schemas/ is: the plain-Postgres bootstrap, then each file in order."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(BOOTSTRAP.read_text())
        for path in files:
            with conn.transaction():
                conn.execute(path.read_text())


def catalog(database_url: str) -> dict[str, list[str]]:
    with psycopg.connect(database_url) as conn:
        return {name: [row[0] for row in conn.execute(query)] for name, query in CATALOG.items()}


def differences(expected: dict[str, list[str]], actual: dict[str, list[str]]) -> str:
    """What differs, kind by kind ('' when the catalogs are equal).

    Rows of columns, grants, policies, ... each name their object, so a plain unified diff reads well; a function
    or a view is diffed on its own, under its name, so that the name heads every change to its text.
    """
    out = []
    for name in CATALOG:
        before, after = expected[name], actual[name]
        if before == after:
            continue
        if name not in WHOLE_OBJECTS:
            out.append(_diff(before, after, f"{name} from migrations/", f"{name} from schemas/"))
            continue
        old = {row.split(None, 1)[0]: row for row in before}
        new = {row.split(None, 1)[0]: row for row in after}
        out.extend(
            _diff(
                old.get(key, "").splitlines(),
                new.get(key, "").splitlines(),
                f"{name}: {key} from migrations/" if key in old else f"{name}: {key} not in migrations/",
                f"{name}: {key} from schemas/" if key in new else f"{name}: {key} not in schemas/",
            )
            for key in sorted(old.keys() | new.keys())
            if old.get(key) != new.get(key)
        )
    return "\n\n".join(out)


def _diff(before: list[str], after: list[str], before_name: str, after_name: str) -> str:
    return "\n".join(difflib.unified_diff(before, after, before_name, after_name, lineterm=""))


@pytest.fixture
def new_database(server_url):
    """A factory of new, empty databases on the test server, all dropped at the end."""
    names: list[str] = []

    def create() -> str:
        name = f"leadwatch_schema_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'create database "{name}"')
        names.append(name)
        return psycopg.conninfo.make_conninfo(server_url, dbname=name)

    yield create
    with psycopg.connect(server_url, autocommit=True) as conn:
        for name in names:
            conn.execute(f'drop database "{name}" with (force)')


@pytest.fixture(scope="module")
def migrated_catalog(server_url):
    """The catalog of a database built as `leadwatch migrate` builds it (bootstrap included)."""
    name = f"leadwatch_schema_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    try:
        url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
        migrate(url)
        yield catalog(url)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'drop database "{name}" with (force)')


def test_config_lists_every_schema_file_once():
    files = schema_files()
    assert [f.name for f in files] == sorted(p.name for p in (SUPABASE / "schemas").glob("*.sql"))
    assert len(files) >= 5


def test_schemas_build_the_same_catalog_as_the_migrations(migrated_catalog, new_database):
    url = new_database()
    apply_schemas(url, schema_files())
    diff = differences(migrated_catalog, catalog(url))
    assert diff == "", "supabase/schemas/ and supabase/migrations/ differ:\n" + diff


def test_a_changed_schema_file_is_reported_with_a_readable_diff(migrated_catalog, new_database, tmp_path):
    """The comparison catches a one-word change in one function's body and names it."""
    files = schema_files()
    changed = []
    for path in files:
        copy = tmp_path / path.name
        text = path.read_text()
        if "create or replace function public.ping()" in text:
            text = text.replace("select true", "select 1 = 1", 1)
        copy.write_text(text)
        changed.append(copy)
    url = new_database()
    apply_schemas(url, changed)
    diff = differences(migrated_catalog, catalog(url))
    assert diff.startswith("--- functions: ping() from migrations/\n+++ functions: ping() from schemas/\n")
    assert "\n-  select true\n+  select 1 = 1\n" in diff


def test_the_seed_loads_on_the_migrated_database(new_database):
    url = new_database()
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SEED.read_text())
        assert conn.execute("select count(*) from public.leads").fetchone()[0] > 0


def test_one_baseline_migration():
    """Nothing was deployed before the baseline: it holds the whole schema; later changes add files after it."""
    files = sorted(p.name for p in MIGRATIONS_DIR.glob("*.sql"))
    assert files[0] == "20261201000000_baseline.sql"
