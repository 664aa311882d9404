"""A real PostgreSQL server for tests: Debian's binaries, a temp dir, a loopback port.

The server refuses to run as root, so as root it runs as the ``postgres`` user. It starts
once per test session; each test gets a database of its own.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from tests.servers import free_port

PASSWORD = "pg-s3cret-Zq7"
"""The test role's password: tests grep logs and output for it."""


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@dataclass
class PostgresServer:
    bin: Path
    data: Path
    port: int
    counter: int = 0

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://watcher:{password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database owned by the test role; its URL."""
        self.counter += 1
        name = f"t{os.getpid()}_{self.counter}"
        self.psql(f"CREATE DATABASE {name} OWNER watcher")
        return self.url(name)

    def psql(self, sql: str) -> str:
        command = [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port)]
        command += ["-U", "postgres", "-d", "postgres", "-tAc", sql]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout

    def pg_ctl(self, *args: str) -> None:
        command = [str(self.bin / "pg_ctl"), "-D", str(self.data), *args]
        subprocess.run(_as_postgres(command), check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=200"
        )
        self.pg_ctl("-o", options, "-l", str(self.data / "server.log"), "-w", "start")

    def stop(self) -> None:
        status = [str(self.bin / "pg_ctl"), "-D", str(self.data), "status"]
        if subprocess.run(_as_postgres(status), capture_output=True).returncode == 0:
            self.pg_ctl("-m", "fast", "-w", "stop")


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def start_server() -> Generator[PostgresServer, None, None]:
    folder = binaries()
    assert folder is not None
    root = Path(tempfile.mkdtemp(prefix="watcher-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    initdb = [str(folder / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8"]
    initdb += ["--auth-local=trust", "--auth-host=trust", "--no-sync", "--locale=C.UTF-8"]
    subprocess.run(_as_postgres(initdb), check=True, capture_output=True, timeout=120)
    hba = data / "pg_hba.conf"
    hba.write_text(
        "host all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
    )
    server = PostgresServer(folder, data, free_port())
    server.start()
    try:
        server.psql(f"CREATE ROLE watcher LOGIN PASSWORD '{PASSWORD}' CREATEDB")
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
