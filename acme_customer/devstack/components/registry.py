"""Apicurio Registry 3 (its Confluent-compatible API under /apis/ccompat/v7)."""

from __future__ import annotations

import tarfile
from pathlib import Path

from acme_customer.devstack.components.base import (
    APICURIO_VERSION,
    Component,
    ComponentError,
    Launch,
    http_ok,
    java_binary,
    maven_copy,
)


class Registry(Component):
    """Apicurio Registry 3, which serves the Confluent-compatible API."""

    name = "registry"
    port_names = ("registry", "registry_management")

    @property
    def dist(self) -> Path:
        return self.home / "dist" / APICURIO_VERSION

    def _runner(self) -> Path | None:
        found = sorted(self.dist.glob("**/quarkus-run.jar"))
        return found[0] if found else None

    def install(self) -> None:
        if self._runner() is not None:
            return
        download = self.home / "download"
        download.mkdir(parents=True, exist_ok=True)
        maven_copy(
            self.layout,
            [
                "dependency:copy",
                f"-Dartifact=io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all",
                f"-DoutputDirectory={download}",
            ],
            "fetching Apicurio Registry with Maven",
        )
        # Maven Central carries the "all" distribution as tar.gz only (no zip)
        archive = next(download.glob("*.tar.gz"))
        self.dist.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as bundle:
            bundle.extractall(self.dist, filter="data")
        archive.unlink()
        if self._runner() is None:
            raise ComponentError(f"no quarkus-run.jar inside {archive.name}")

    def launch(self) -> Launch:
        runner = self._runner()
        assert runner is not None
        database = self.home / "data" / "registry"
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        return Launch(
            [
                java_binary(minimum=21),
                "-Xmx384m",
                f"-Dquarkus.http.port={self.ports['registry']}",
                "-Dquarkus.http.host=127.0.0.1",
                f"-Dquarkus.management.port={self.ports['registry_management']}",
                "-Dquarkus.management.host=127.0.0.1",
                "-Dapicurio.storage.kind=sql",
                "-Dapicurio.storage.sql.kind=h2",
                # the default is an in-memory H2 database; a file keeps schemas across restarts
                f"-Dapicurio.datasource.url=jdbc:h2:file:{database}",
                "-jar",
                str(runner),
            ],
            runner.parent,
        )

    def ready(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.ports['registry']}/apis/ccompat/v7/subjects")

    def env(self) -> dict[str, str]:
        return {"SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{self.ports['registry']}/apis/ccompat/v7"}
