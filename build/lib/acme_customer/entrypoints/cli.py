"""The ``acme-customer`` command: local stack, migrations, worker."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _devstack_root() -> Path:
    return Path(os.environ.get("DEVSTACK_DIR", REPO / ".devstack")).resolve()


def _devstack(args: argparse.Namespace) -> int:
    from acme_customer.devstack.components import ComponentError
    from acme_customer.devstack.stack import Stack

    stack = Stack(_devstack_root(), REPO, names=args.components or None)
    try:
        if args.action == "up":
            stack.up()
        elif args.action == "down":
            stack.down()
        elif args.action == "stop":
            for component in stack.components:
                stack.stop(component)
                print(f"{component.name}: stopped")
        elif args.action == "start":
            for component in stack.components:
                stack.start(component)
        elif args.action == "env":
            sys.stdout.write((stack.layout.root / "env").read_text())
        else:
            rows = stack.status()
            for name, description, _ in rows:
                print(f"{name:9} {description}")
            return 0 if all(healthy for _, _, healthy in rows) else 1
    except ComponentError as error:
        print(f"devstack: {error}", file=sys.stderr)
        return 1
    return 0


def _migrate(_: argparse.Namespace) -> int:
    from acme_customer.adapters.migrations import apply_migrations
    from acme_customer.config import Settings
    from acme_customer.errors import ConfigError

    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as error:
        print(f"acme-customer: {error}", file=sys.stderr)
        return 2
    applied = apply_migrations(settings.database_url)
    print(f"migrations applied: {', '.join(applied) if applied else 'none (schema up to date)'}")
    return 0


def _topics(args: argparse.Namespace) -> int:
    import asyncio

    from acme_customer.adapters.topics import ensure_topics

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    if not bootstrap:
        print("acme-customer: KAFKA_BOOTSTRAP_SERVERS is not set", file=sys.stderr)
        return 2
    created = asyncio.run(ensure_topics(bootstrap, partitions=args.partitions))
    print(f"topics created: {', '.join(created) if created else 'none (all exist)'}")
    return 0


def _committed_versions(path: Path) -> list[dict[str, object]]:
    """Every committed version of a file, oldest first, distinct contents only (empty without git)."""
    import json
    import subprocess

    relative = path.relative_to(REPO)
    log = subprocess.run(
        ["git", "log", "--format=%H", "--reverse", "--", str(relative)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    versions: list[dict[str, object]] = []
    for commit in log.stdout.split():
        shown = subprocess.run(
            ["git", "show", f"{commit}:{relative}"], cwd=REPO, capture_output=True, text=True, check=False
        )
        if shown.returncode == 0:
            version = json.loads(shown.stdout)
            if not versions or versions[-1] != version:
                versions.append(version)
    return versions


def _schemas(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from acme_customer.adapters.schemas import backward_problems

    registry_url = os.environ.get("SCHEMA_REGISTRY_URL", "")
    if not registry_url:
        print("acme-customer: SCHEMA_REGISTRY_URL is not set", file=sys.stderr)
        return 2
    failed = False
    for path in sorted((REPO / "avro").glob("*.avsc")):
        current = json.loads(path.read_text())
        history = _committed_versions(path)
        if history and history[-1] == current:
            history = history[:-1]  # the working copy is the last committed version
        problem = asyncio.run(backward_problems(registry_url, path.stem, history, current))
        print(f"{path.name}: {problem or f'BACKWARD compatible with {len(history)} earlier version(s)'}")
        failed = failed or problem is not None
    return 1 if failed else 0


def _demo(_: argparse.Namespace) -> int:
    from acme_customer.entrypoints.demo import run

    return run()


def _worker(args: argparse.Namespace) -> int:
    from acme_customer.app import app

    sys.argv = ["acme-customer", "worker", *args.faust_args]
    app.main()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="acme-customer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    devstack = commands.add_parser("devstack", help="the real local stack (Kafka, registry, PostgreSQL, Mongo)")
    devstack.add_argument("action", choices=["up", "down", "status", "start", "stop", "env"])
    devstack.add_argument("components", nargs="*", help="postgres, mongo, kafka, registry (default: all)")
    devstack.set_defaults(handler=_devstack)

    migrate = commands.add_parser("migrate", help="apply the PostgreSQL schema migrations")
    migrate.set_defaults(handler=_migrate)

    topics = commands.add_parser("topics", help="create the contract's topics when missing")
    topics.add_argument("action", choices=["ensure"])
    topics.add_argument("--partitions", type=int, default=12, help="partitions of the input and output topics")
    topics.set_defaults(handler=_topics)

    schemas = commands.add_parser("schemas", help="check avro/*.avsc against their committed history")
    schemas.add_argument("action", choices=["check"])
    schemas.set_defaults(handler=_schemas)

    demo = commands.add_parser("demo", help="run the main job end to end on the local stack and show the result")
    demo.set_defaults(handler=_demo)

    worker = commands.add_parser("worker", help="run the Faust worker (same as faust -A acme_customer.app worker)")
    worker.add_argument("faust_args", nargs=argparse.REMAINDER)
    worker.set_defaults(handler=_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
