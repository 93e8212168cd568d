"""The local stack's components: how each is installed, started and probed.

Every component is a real server run as a child process we own:
Apache Kafka (one KRaft broker+controller), Apicurio Registry 3, PostgreSQL 16
(the binaries of the ``pgserver`` wheel) and a MongoDB wire server (``mongod``
when installed, otherwise FerretDB v1 with its SQLite backend).
"""

from __future__ import annotations

import base64
import importlib.util
import os
import pwd
import re
import shutil
import socket
import subprocess
import tarfile
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

KAFKA_VERSION = "3.9.1"
APICURIO_VERSION = "3.3.3"
FERRETDB_VERSION = "v1.24.2"
POSTGRES_OS_USER = "acme-devstack"  # PostgreSQL refuses to run as root
START_MARKER = "==== starting at "  # written to a component's log before each start


class ComponentError(RuntimeError):
    """A component could not be installed or started."""


@dataclass
class Layout:
    """Where the stack keeps its files (all under one ``.devstack`` folder)."""

    root: Path
    repo: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def log_of(self, name: str) -> Path:
        return self.logs / f"{name}.log"


@dataclass
class Launch:
    """What to run for a component and how to tell it is ready."""

    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    stop_signal: int = 15


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _java_major(java: str) -> int:
    result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)', result.stderr)
    return int(match.group(1)) if match else 0


def java_binary(minimum: int = 17) -> str:
    """A ``java`` of at least version ``minimum``: $JAVA_HOME, then PATH, then /usr/lib/jvm."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    if shutil.which("java"):
        candidates.append(str(shutil.which("java")))
    candidates += [str(path) for path in sorted(Path("/usr/lib/jvm").glob("*/bin/java"), reverse=True)]
    for java in candidates:
        if Path(java).exists() and _java_major(java) >= minimum:
            return java
    raise ComponentError(
        f"no Java {minimum}+ found (looked at $JAVA_HOME, PATH and /usr/lib/jvm): install a JDK {minimum}+"
    )


def run_checked(argv: list[str], what: str, cwd: Path | None = None, log: Path | None = None) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if log is not None:
        with log.open("a") as handle:
            handle.write(result.stdout + result.stderr)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise ComponentError(f"{what} failed (exit {result.returncode}):\n{tail}")


def maven_copy(layout: Layout, goal_args: list[str], what: str) -> None:
    pom = layout.repo / "deploy" / "devstack" / "pom.xml"
    mvn = shutil.which("mvn")
    if not mvn:
        raise ComponentError("mvn not found: install Maven (see README prerequisites)")
    run_checked([mvn, "-q", "-B", "-f", str(pom), *goal_args], what, log=layout.logs / "install.log")


class Component:
    """One server of the local stack."""

    name = ""
    port_names: tuple[str, ...] = ()

    def __init__(self, layout: Layout, ports: dict[str, int]):
        self.layout = layout
        self.ports = ports
        self.home = layout.root / self.name

    def install(self) -> None:
        """Fetch or build what the component needs (cached after the first time)."""

    def prepare(self) -> None:
        """Create configuration and initialise data on first start."""

    def launch(self) -> Launch:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def after_ready(self) -> None:
        """One-time set-up that needs the running server."""

    def env(self) -> dict[str, str]:
        return {}


class Kafka(Component):
    name = "kafka"
    port_names = ("kafka", "kafka_controller")

    @property
    def libs(self) -> Path:
        return self.home / "libs" / KAFKA_VERSION

    def install(self) -> None:
        if (self.libs / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
            return
        self.libs.mkdir(parents=True, exist_ok=True)
        maven_copy(
            self.layout,
            [
                "dependency:copy-dependencies",
                f"-Dkafka.version={KAFKA_VERSION}",
                f"-DoutputDirectory={self.libs}",
                "-DincludeScope=runtime",
            ],
            "resolving the Kafka jars with Maven",
        )

    def prepare(self) -> None:
        data = self.home / "data"
        config = self.home / "server.properties"
        port, controller = self.ports["kafka"], self.ports["kafka_controller"]
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{controller}",
                    f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={data}",
                    "num.partitions=1",
                    "auto.create.topics.enable=false",  # topics come from `acme-customer topics ensure`
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=4",
                    "group.initial.rebalance.delay.ms=0",
                    "log.retention.hours=168",
                    "",
                ]
            )
        )
        (self.home / "log4j.properties").write_text(
            "log4j.rootLogger=INFO, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.request.logger=WARN\n"
            "log4j.logger.state.change.logger=WARN\n"
        )
        if (data / "meta.properties").exists():
            return
        data.mkdir(parents=True, exist_ok=True)
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        run_checked(
            [*self._java(), "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)],
            "formatting the Kafka storage",
            log=self.layout.log_of(self.name),
        )

    def _java(self) -> list[str]:
        return [
            java_binary(),
            "-Xms256m",
            "-Xmx768m",
            f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
            "-cp",
            f"{self.libs}/*",
        ]

    def launch(self) -> Launch:
        return Launch([*self._java(), "kafka.Kafka", str(self.home / "server.properties")], self.home)

    def ready(self) -> bool:
        if not port_open(self.ports["kafka"]):
            return False
        log = self.layout.log_of(self.name)
        if not log.exists():
            return False
        this_run = log.read_text(errors="replace").rsplit(START_MARKER, 1)[-1]
        return "Kafka Server started" in this_run

    def env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.ports['kafka']}"}


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


COMPONENTS: tuple[type[Component], ...] = (Postgres, Mongo, Kafka, Registry)
