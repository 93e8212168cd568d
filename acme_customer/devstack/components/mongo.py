"""The MongoDB wire server: a mongod on PATH, otherwise FerretDB v1 built with go install."""

from __future__ import annotations

import shutil
from pathlib import Path

from acme_customer.devstack.components.base import (
    FERRETDB_VERSION,
    Component,
    ComponentError,
    Launch,
    port_open,
    run_checked,
)


class Mongo(Component):
    """A MongoDB wire server: ``mongod`` if installed, else FerretDB v1 on SQLite."""

    name = "mongo"
    port_names = ("mongo",)

    @property
    def ferretdb(self) -> Path:
        return self.layout.bin / f"acme-ferretdb-{FERRETDB_VERSION}"

    def install(self) -> None:
        if shutil.which("mongod") or self.ferretdb.exists():
            return
        go = shutil.which("go")
        if not go:
            raise ComponentError("neither mongod nor go found: install Go 1.24+ to build FerretDB (README)")
        # `go install .../cmd/ferretdb@v1.24.2` builds a binary that panics at start (the proxy's
        # module zip lacks build/version/version.txt); our small main embeds FerretDB instead.
        source = self.layout.repo / "deploy" / "devstack" / "ferretdb"
        run_checked(
            [go, "build", "-o", str(self.ferretdb), "."],
            "building FerretDB with go build",
            cwd=source,
            log=self.layout.logs / "install.log",
        )

    def launch(self) -> Launch:
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        mongod = shutil.which("mongod")
        if mongod:
            argv = [mongod, "--bind_ip", "127.0.0.1", "--port", str(self.ports["mongo"]), "--dbpath", str(data)]
        else:
            argv = [
                str(self.ferretdb),
                f"--listen-addr=127.0.0.1:{self.ports['mongo']}",
                f"--sqlite-url=file:{data}/",
                "--log-level=warn",
            ]
        return Launch(argv, self.home)

    def ready(self) -> bool:
        if not port_open(self.ports["mongo"]):
            return False
        from pymongo import MongoClient  # imported late: only needed once the port answers

        client: MongoClient[dict[str, object]] = MongoClient(
            f"mongodb://127.0.0.1:{self.ports['mongo']}/", serverSelectionTimeoutMS=1000
        )
        try:
            client.admin.command("ping")
            return True
        except Exception:
            return False
        finally:
            client.close()

    def env(self) -> dict[str, str]:
        return {"MONGODB_URI": f"mongodb://127.0.0.1:{self.ports['mongo']}/", "MONGODB_DATABASE": "customer"}
