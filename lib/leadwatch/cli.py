"""`leadwatch dev | migrate | sweep | retain | deliver | schedule | smoke`."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import socket
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from . import logs
from .config import load_settings
from .errors import ConfigError, LeadwatchError

# A local frontend (Vite's default port) may call the dev server unless LEADWATCH_CORS_ORIGINS says otherwise.
DEV_CORS_ORIGINS = ("http://localhost:5173", "http://127.0.0.1:5173")


def _dev(args: argparse.Namespace) -> int:
    from .devtools.demo import DEMO_TENANT, load_demo
    from .devtools.dev import THREADS, create_app, serve
    from .devtools.embedded import start_embedded
    from .devtools.outbox import DevOutbox
    from .http.app import Api
    from .http.identity import OpenAccess, VerifiedAccess
    from .migrate import migrate
    from .stores.store import PostgresStore

    settings = load_settings()
    access: OpenAccess | VerifiedAccess
    if args.auth:
        access = VerifiedAccess(settings)
    elif ipaddress.ip_address(_resolve(args.host)).is_loopback:
        access = OpenAccess()
    else:
        print(
            "Refusing to serve the open dev mode on a non-loopback address: it trusts X-Tenant from anyone. "
            "Use --auth to verify callers as the cloud does.",
            file=sys.stderr,
        )
        return 2
    _check_port_free(args.host, args.port)  # before PostgreSQL starts, not after
    database_url = args.database_url or settings.database_url
    if database_url:
        check_database(database_url)
        where = "the Postgres at --database-url / DATABASE_URL"
    else:
        _check_data_dir(Path(args.data_dir))
        print(f"Starting the embedded PostgreSQL in {args.data_dir} ...", flush=True)
        try:
            database_url = start_embedded(args.data_dir)
        except Exception as exc:  # noqa: BLE001 - its own log says why; the user needs one line and where to look
            raise ConfigError(
                f"the embedded PostgreSQL did not start ({type(exc).__name__}): see {Path(args.data_dir) / 'log'}, "
                "or remove the folder to start afresh"
            ) from None
        print(f'Embedded PostgreSQL: {database_url}  (psql "{database_url}")', flush=True)
        where = f"the embedded PostgreSQL in {args.data_dir}"
    applied = migrate(database_url)
    if applied:
        print(f"Applied {len(applied)} migration(s).")
    store = PostgresStore(database_url, timeout=settings.db_timeout, pool_size=max(settings.db_pool_size, THREADS))
    if not args.no_demo:
        alerts = load_demo(database_url)
        print(f"Demo leads loaded in tenant '{DEMO_TENANT}' from supabase/seed.sql ({alerts} active alert(s)).")

    base = f"http://{args.host}:{args.port}"
    mode = (
        "AUTH MODE: callers are verified exactly as in the cloud (Bearer JWT, service key, scheduler token)."
        if args.auth
        else "!!! OPEN MODE: X-Tenant is trusted WITHOUT authentication. Loopback only; use --auth to verify. !!!"
    )
    print(
        f"""
leadwatch dev — serving every function on {base} over {where}.
{mode}

  curl {base}/health
  curl {base}/api/alerts/active -H 'X-Tenant: {DEMO_TENANT}'
  curl -X POST {base}/api/alerts/sweep
  curl {base}/dev/outbox    (what a channel with no provider would have sent)
""",
        flush=True,
    )
    api = Api.from_settings(settings, store, access, settings.cors_origins or DEV_CORS_ORIGINS)
    if not args.auth:  # open mode, loopback only: a channel with no provider sends here (GET /dev/outbox)
        api.outbox = DevOutbox()
    logs.setup()  # one JSON line per request, as the deployed functions log
    # Stopped by a supervisor (SIGTERM) as by Ctrl-C, the process exits and the embedded database stops too.
    serve(create_app(api), args.host, args.port)
    return 0


def _resolve(host: str) -> str:
    return socket.gethostbyname(host)


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"port {port} on {host} is not available ({exc.strerror}): stop what uses it or pass --port {port + 1}"
            ) from None


def _check_data_dir(data_dir: Path) -> None:
    """An existing --data-dir must be the embedded database's own folder (or empty), and writable."""
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(f"--data-dir {data_dir} is a file: pass a folder (it is created when missing)")
    if data_dir.is_dir() and any(data_dir.iterdir()) and not (data_dir / "PG_VERSION").exists():
        raise ConfigError(
            f"--data-dir {data_dir} is not empty and holds no leadwatch database: pass a new or empty folder"
        )
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / ".leadwatch-write-test").touch()
        (data_dir / ".leadwatch-write-test").unlink()
    except OSError as exc:
        raise ConfigError(
            f"--data-dir {data_dir} is not writable ({exc.strerror}): pass a folder you can write to"
        ) from None


def check_database(database_url: str) -> None:
    """Connect once: a malformed or unreachable URL is one line naming it, never a traceback."""
    import psycopg

    try:
        params = psycopg.conninfo.conninfo_to_dict(database_url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(
            f"DATABASE_URL is malformed ({str(exc).strip().splitlines()[0]}): "
            "expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from None
    where = f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}/{params.get('dbname') or ''}"
    try:
        psycopg.connect(database_url, connect_timeout=5).close()
    except psycopg.Error as exc:
        reason = (str(exc).strip().splitlines() or ["no answer"])[-1].strip()
        raise ConfigError(
            f"cannot reach the database at {where} ({reason}): check DATABASE_URL / --database-url and that "
            "the server is running"
        ) from None


def _migrate(args: argparse.Namespace) -> int:
    from .migrate import migrate

    settings = load_settings()
    database_url = args.database_url or settings.database_url
    if not database_url:
        raise ConfigError(
            "leadwatch migrate needs DATABASE_URL (on Supabase: the project's direct connection "
            "string), or use `supabase db push`"
        )
    check_database(database_url)
    applied = migrate(database_url)
    print("\n".join(f"applied {name}" for name in applied) or "nothing to apply: the database is up to date")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from .stores.store import make_store

    settings = load_settings()
    if args.database_url:
        settings = replace(settings, database_url=args.database_url)
    if settings.database_url:
        check_database(settings.database_url)
    store = make_store(settings)
    try:
        print(json.dumps(store.sweep(args.tenant), indent=2))
    finally:
        store.close()
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from .jobs.schedule import COMMAND, schedule, unschedule

    database_url = args.database_url or load_settings().database_url
    if not database_url:
        raise ConfigError("leadwatch schedule needs DATABASE_URL (on Supabase: the project's direct connection string)")
    if not args.pg_cron:
        raise ConfigError("say where to schedule: --pg-cron (Cloud Scheduler is set up by deploy.sh)")
    check_database(database_url)
    if args.unschedule:
        print("unscheduled" if unschedule(database_url) else "nothing was scheduled")
    else:
        job = schedule(database_url, args.at)
        print(f"pg_cron job {job}: `{COMMAND}` at '{args.at}' (UTC)")
    return 0


def _smoke(args: argparse.Namespace) -> int:
    from .devtools.smoke import Smoke

    smoke = Smoke(
        args.url, args.token, args.tenant, scheduler_token=args.scheduler_token, identity_token=args.identity_token
    )
    return smoke.run(lambda line: print(line, flush=True))


def _retain(args: argparse.Namespace) -> int:
    """Apply the retention policies batch after batch until nothing past its age is left."""
    from .jobs.retention import retain_once
    from .stores.store import make_store

    settings = load_settings()
    if args.database_url:
        settings = replace(settings, database_url=args.database_url)
    store = make_store(settings)
    removed = {"activities": 0, "alerts": 0, "events": 0, "deliveries": 0, "pushes": 0, "digests": 0}
    try:
        while True:
            batch = retain_once(store, args.tenant, args.batch)
            for kind in removed:
                removed[kind] += batch.get(kind, 0) + batch["notifications"].get(kind, 0)
            if not batch["more"]:
                break
    finally:
        store.close()
    print(json.dumps(removed, indent=2))
    return 0


def _deliver(args: argparse.Namespace) -> int:
    """Send the outgoing webhooks that are due, batch after batch, until none is."""
    from .egress import Egress
    from .integrations.greenapi import GreenApi
    from .jobs.notifications import run_notifications
    from .stores.store import make_store

    settings = load_settings()
    if args.database_url:
        settings = replace(settings, database_url=args.database_url)
    store = make_store(settings)
    try:
        result = run_notifications(
            store,
            GreenApi(settings.greenapi_instances),
            batch=args.batch,
            budget_seconds=args.budget,
            egress=Egress.from_settings(settings),
        )
        print(json.dumps(result, indent=2))
    finally:
        store.close()
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="leadwatch", description="Living alerts for sales leads.")
    commands = root.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="serve every function locally over an embedded PostgreSQL")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=None, help="default: $PORT or 8080")
    dev.add_argument("--data-dir", default=".leadwatch", help="where the embedded database lives")
    dev.add_argument("--no-demo", action="store_true", help="do not load the demo leads")
    dev.add_argument("--database-url", help="use this Postgres instead of the embedded one")
    dev.add_argument("--auth", action="store_true", help="verify callers exactly as the deployed functions do")
    dev.set_defaults(run=_dev)

    migrate = commands.add_parser("migrate", help="apply pending migrations to DATABASE_URL")
    migrate.add_argument("--database-url")
    migrate.set_defaults(run=_migrate)

    sweep = commands.add_parser("sweep", help="run the alert sweep against the configured backend")
    sweep.add_argument("--tenant", help="only this tenant (default: all)")
    sweep.add_argument("--database-url")
    sweep.set_defaults(run=_sweep)

    from .devtools.smoke import DEFAULT_TENANT
    from .jobs.schedule import DEFAULT_SCHEDULE

    cron = commands.add_parser("schedule", help="schedule the daily sweep inside the database (pg_cron)")
    cron.add_argument("--pg-cron", action="store_true", help="with pg_cron (Supabase Cron)")
    cron.add_argument("--at", default=DEFAULT_SCHEDULE, help=f"cron schedule, UTC (default: '{DEFAULT_SCHEDULE}')")
    cron.add_argument("--unschedule", action="store_true", help="remove the job instead")
    cron.add_argument("--database-url")
    cron.set_defaults(run=_schedule)

    smoke = commands.add_parser("smoke", help="check a deployment: the deployment checklist's phase 4")
    smoke.add_argument("url", help="the dev server, or https://REGION-PROJECT.cloudfunctions.net")
    smoke.add_argument("--token", required=True, help="the service key (SUPABASE_SERVICE_KEY)")
    smoke.add_argument("--tenant", default=DEFAULT_TENANT, help=f"the tenant it writes in (default: {DEFAULT_TENANT})")
    smoke.add_argument("--scheduler-token", help="LEADWATCH_SCHEDULER_TOKEN, for the private sweep in the cloud")
    smoke.add_argument("--identity-token", help="for the private sweep: `gcloud auth print-identity-token`")
    smoke.set_defaults(run=_smoke)

    retain = commands.add_parser("retain", help="remove what is past each tenant's retention, in bounded batches")
    retain.add_argument("--tenant", help="only this tenant (default: all)")
    retain.add_argument("--batch", type=int, default=5000, help="rows of each kind per transaction (default 5000)")
    retain.add_argument("--database-url")
    retain.set_defaults(run=_retain)

    deliver = commands.add_parser("deliver", help="send the outgoing webhooks that are due (signed, retried)")
    deliver.add_argument("--batch", type=int, default=100, help="deliveries claimed per batch (default 100)")
    deliver.add_argument("--budget", type=float, default=50.0, help="stop claiming after this many seconds")
    deliver.add_argument("--database-url")
    deliver.set_defaults(run=_deliver)
    return root


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = parser().parse_args(argv)
    if getattr(args, "port", 0) is None:
        try:
            args.port = load_settings().port
        except ConfigError as exc:
            print(f"leadwatch: {exc}", file=sys.stderr)
            return 2
    try:
        run: Callable[[argparse.Namespace], int] = args.run
        return run(args)
    except ConfigError as exc:
        print(f"leadwatch: configuration error: {exc}", file=sys.stderr)
        return 2
    except LeadwatchError as exc:
        print(f"leadwatch: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
