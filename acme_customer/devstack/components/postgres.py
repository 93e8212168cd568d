"""PostgreSQL 16 from the binaries of the pgserver wheel."""

from __future__ import annotations

import importlib.util
import os
import pwd
import subprocess
from pathlib import Path

from acme_customer.devstack.components.base import (
    POSTGRES_OS_USER,
    Component,
    ComponentError,
    Launch,
    run_checked,
)


class Postgres(Component):
    """PostgreSQL 16 from the binaries that the ``pgserver`` wheel ships."""

    name = "postgres"
    port_names = ("postgres",)
    database = "customer"

    @property
    def bin(self) -> Path:
        # located without importing pgserver, whose import has side effects (runtime dirs, locks)
        spec = importlib.util.find_spec("pgserver")
        if spec is None or not spec.submodule_search_locations:
            raise ComponentError("the pgserver package is not installed (pip install -r requirements.txt)")
        return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"

    @property
    def data(self) -> Path:
        return self.home / "data"

    def _os_user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(POSTGRES_OS_USER)
        except KeyError:
            run_checked(["useradd", "--system", "--no-create-home", POSTGRES_OS_USER], "creating the postgres OS user")
        return POSTGRES_OS_USER

    def _as_owner(self, argv: list[str], what: str) -> None:
        user = self._os_user()
        result = subprocess.run(argv, capture_output=True, text=True, user=user, check=False, cwd=self.home)
        if result.returncode != 0:
            raise ComponentError(f"{what} failed: {(result.stdout + result.stderr).strip()[-2000:]}")

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        user = self._os_user()
        if user is not None:
            entry = pwd.getpwnam(user)
            # the server runs as a non-root user: it must reach and own its folders
            for parent in [self.layout.root, *self.layout.root.parents]:
                if parent.stat().st_mode & 0o055 != 0o055:
                    parent.chmod(parent.stat().st_mode | 0o055)
            for path in [self.home, *self.home.rglob("*")]:
                os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        if (self.data / "PG_VERSION").exists():
            return
        self._as_owner(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
            ],
            "initdb",
        )

    def launch(self) -> Launch:
        sockets = self.home / "sockets"
        sockets.mkdir(exist_ok=True)
        user = self._os_user()
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(sockets, entry.pw_uid, entry.pw_gid)
        return Launch(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.ports["postgres"]),
                "-h",
                "127.0.0.1",
                "-k",
                str(sockets),
                "-c",
                "max_connections=200",
                "-c",
                "fsync=on",
            ],
            self.home,
            user=user,
            stop_signal=2,  # SIGINT: PostgreSQL's "fast" shutdown
        )

    def ready(self) -> bool:
        result = subprocess.run(
            [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.ports["postgres"]), "-U", "postgres"],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def after_ready(self) -> None:
        psql = [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.ports["postgres"]), "-U", "postgres"]
        exists = subprocess.run(
            [*psql, "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"],
            capture_output=True,
            text=True,
            check=False,
        )
        if exists.stdout.strip() != "1":
            run_checked([*psql, "-c", f"CREATE DATABASE {self.database}"], "creating the database")

    def env(self) -> dict[str, str]:
        return {"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{self.ports['postgres']}/{self.database}"}
