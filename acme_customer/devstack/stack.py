"""Start, stop and inspect the local stack.

Each component runs in its own session (process group) and its pid is kept in
``.devstack/pids/<name>.pid``; ``down`` signals exactly those groups, never
processes found by name. Ports are chosen once (free ones, or the
``DEVSTACK_<NAME>_PORT`` variables) and kept in ``.devstack/ports.json`` so that
data and endpoints survive a restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from acme_customer.devstack.components import (
    COMPONENTS,
    START_MARKER,
    Component,
    ComponentError,
    Layout,
    port_open,
)

Report = Callable[[str], None]

START_TIMEOUT_S = {"kafka": 90.0, "registry": 180.0, "postgres": 60.0, "mongo": 60.0}
STOP_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _alive(pid: int) -> bool:
    """True while the process or any of its threads still runs (a zombie leader alone is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    # the main thread can turn zombie while other threads still hold the ports open
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as stat:
                if stat.read().rsplit(") ", 1)[1][0] != "Z":
                    return True
        except OSError:
            continue  # that thread has just gone; look at the others
    return False


def _tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class Stack:
    """The local stack rooted at one ``.devstack`` folder."""

    def __init__(self, root: Path, repo: Path, names: Iterable[str] | None = None):
        self.layout = Layout(root=root, repo=repo)
        for folder in (self.layout.root, self.layout.logs, self.layout.pids, self.layout.bin):
            folder.mkdir(parents=True, exist_ok=True)
        self.ports = self._ports()
        wanted = set(names) if names else None
        self.all_components: list[Component] = [kind(self.layout, self.ports) for kind in COMPONENTS]
        unknown = (wanted or set()) - {component.name for component in self.all_components}
        if unknown:
            raise ComponentError(f"unknown component(s): {', '.join(sorted(unknown))}")
        self.components = [c for c in self.all_components if wanted is None or c.name in wanted]

    def _ports(self) -> dict[str, int]:
        saved = self.layout.root / "ports.json"
        ports: dict[str, int] = json.loads(saved.read_text()) if saved.exists() else {}
        for kind in COMPONENTS:
            for port_name in kind.port_names:
                override = os.environ.get(f"DEVSTACK_{port_name.upper()}_PORT")
                if override:
                    ports[port_name] = int(override)
                elif port_name not in ports:
                    ports[port_name] = _free_port()
        saved.write_text(json.dumps(ports, indent=2, sort_keys=True) + "\n")
        return ports

    def _pidfile(self, component: Component) -> Path:
        return self.layout.pids / f"{component.name}.pid"

    def pid_of(self, component: Component) -> int | None:
        pidfile = self._pidfile(component)
        if not pidfile.exists():
            return None
        return int(pidfile.read_text().split()[0])

    def running(self, component: Component) -> bool:
        pid = self.pid_of(component)
        return pid is not None and _alive(pid)

    def component(self, name: str) -> Component:
        for component in self.components:
            if component.name == name:
                return component
        raise ComponentError(f"unknown component {name!r}")

    # -- up -------------------------------------------------------------------------------------
    def up(self, report: Report = print) -> None:
        for component in self.components:
            if self.running(component) and component.ready():
                if not component.outdated():
                    report(f"{component.name}: already running (pid {self.pid_of(component)})")
                    continue
                report(f"{component.name}: running from an older set-up, restarting it")
            self.start(component, report)
        self.write_env()
        report(f"endpoints written to {self.layout.root / 'env'}")

    def start(self, component: Component, report: Report = print) -> None:
        if self.running(component):
            self.stop(component)
        report(f"{component.name}: installing (cached after the first time)…")
        component.install()
        component.prepare()
        launch = component.launch()
        log = self.layout.log_of(component.name)
        with log.open("a") as handle:
            handle.write(f"\n{START_MARKER}{time.strftime('%Y-%m-%dT%H:%M:%S')}: {shlex.join(launch.argv)}\n")
            handle.flush()
            process = subprocess.Popen(
                launch.argv,
                cwd=launch.cwd,
                env={**os.environ, **launch.env},
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=launch.user,
            )
        self._pidfile(component).write_text(f"{process.pid} {launch.stop_signal}\n")
        deadline = time.monotonic() + START_TIMEOUT_S[component.name]
        started = time.monotonic()
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._pidfile(component).unlink(missing_ok=True)
                raise ComponentError(
                    f"{component.name} exited with code {process.returncode} during start-up; "
                    f"last lines of {log}:\n{_tail(log)}"
                )
            if component.ready():
                component.after_ready()
                report(f"{component.name}: ready in {time.monotonic() - started:.1f}s (pid {process.pid})")
                return
            time.sleep(0.5)
        self.stop(component)
        raise ComponentError(
            f"{component.name} not ready after {START_TIMEOUT_S[component.name]:.0f}s;"
            f" last lines of {log}:\n{_tail(log)}"
        )

    # -- down -----------------------------------------------------------------------------------
    def down(self, report: Report = print) -> None:
        for component in reversed(self.components):
            if self.pid_of(component) is None:
                report(f"{component.name}: not started")
                continue
            self.stop(component)
            report(f"{component.name}: stopped")

    def stop(self, component: Component, sig: int | None = None) -> None:
        """Stop a component's process group: its own stop signal, then SIGKILL after a grace period."""
        pidfile = self._pidfile(component)
        if not pidfile.exists():
            return
        fields = pidfile.read_text().split()
        pid, stop_signal = int(fields[0]), int(fields[1]) if len(fields) > 1 else signal.SIGTERM
        self._signal_group(pid, sig if sig is not None else stop_signal)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            self._signal_group(pid, signal.SIGKILL)
            while time.monotonic() < deadline + 10 and _alive(pid):
                time.sleep(0.1)
        self._reap(pid)
        for port_name in component.port_names:  # a restart must find its ports free
            while time.monotonic() < deadline + 10 and port_open(self.ports[port_name]):
                time.sleep(0.1)
        pidfile.unlink(missing_ok=True)

    @staticmethod
    def _signal_group(pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)

    @staticmethod
    def _reap(pid: int) -> None:
        """Collect the exit status when the component is our own child (no zombie left behind)."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG) != (0, 0):
                    return
            except ChildProcessError:
                return  # not our child: its parent or init reaps it
            time.sleep(0.05)

    # -- status ---------------------------------------------------------------------------------
    def status(self) -> list[tuple[str, str, bool]]:
        """(name, description, healthy) for every component."""
        rows = []
        for component in self.components:
            pid = self.pid_of(component)
            if pid is None:
                rows.append((component.name, "not started", False))
            elif not _alive(pid):
                rows.append(
                    (
                        component.name,
                        f"DOWN: pid {pid} is not running (see {self.layout.log_of(component.name)})",
                        False,
                    )
                )
            elif not component.ready():
                rows.append((component.name, f"UNHEALTHY: pid {pid} runs but does not answer", False))
            else:
                ports = ", ".join(str(self.ports[name]) for name in component.port_names)
                rows.append((component.name, f"running (pid {pid}, port {ports})", True))
        return rows

    # -- endpoints ------------------------------------------------------------------------------
    def env_values(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for component in self.all_components:
            values.update(component.env())
        return values

    def write_env(self) -> None:
        lines = [f"{key}={shlex.quote(value)}" for key, value in sorted(self.env_values().items())]
        (self.layout.root / "env").write_text("\n".join(lines) + "\n")
