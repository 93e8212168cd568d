"""What every local-stack component shares: its layout on disk, how it is launched and probed."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
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
