"""The ``acme-customer`` command: local stack, migrations, worker."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from acme_customer.config import Settings

REPO = Path(__file__).resolve().parents[2]

# Exit codes of every command (docs/operations.md, "Exit codes"); argparse's usage errors are 2 too
EXIT_OK = 0
EXIT_FINDINGS = 1  # the command ran and found something wrong (verify, reconcile, schemas check, devstack status)
EXIT_CONFIGURATION = 2  # a setting missing or malformed: the command could not run as configured
EXIT_UNAVAILABLE = 3  # PostgreSQL, MongoDB, Kafka or the schema registry unreachable or refusing
EXIT_REPAIRS_PENDING = 4  # reconcile without --apply: there is something --apply would repair


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

    settings = _settings_or_exit()
    if settings is None:
        return EXIT_CONFIGURATION
    applied = apply_migrations(settings.database_url)
    print(f"migrations applied: {', '.join(applied) if applied else 'none (schema up to date)'}")
    return 0


def _topics(args: argparse.Namespace) -> int:
    import asyncio

    from acme_customer.adapters.topics import DEFAULT_PARTITIONS, ensure_topics, grow_topics
    from acme_customer.config import kafka_security

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    if not bootstrap:
        print("acme-customer: KAFKA_BOOTSTRAP_SERVERS is not set", file=sys.stderr)
        return EXIT_CONFIGURATION
    security = kafka_security(os.environ)  # a ConfigError is main's: one line per problem, exit 2
    if args.partitions is not None:  # a TopicsRefused is main's too: one line, nothing changed
        grown = asyncio.run(grow_topics(bootstrap, args.partitions, security=security))
        print(f"topics grown to {args.partitions} partitions: {', '.join(grown) if grown else 'none (all have them)'}")
    partitions = args.partitions or DEFAULT_PARTITIONS
    created = asyncio.run(ensure_topics(bootstrap, partitions=partitions, security=security))
    print(f"topics created: {', '.join(created) if created else 'none (all exist)'}")
    return 0


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return number


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
        return EXIT_CONFIGURATION
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


def _settings_or_exit() -> Settings | None:
    from acme_customer.config import Settings
    from acme_customer.errors import ConfigError

    try:
        return Settings.from_env(os.environ)
    except ConfigError as error:
        for problem in error.problems:
            print(f"acme-customer: {problem}", file=sys.stderr)
        return None


def _dlq(args: argparse.Namespace) -> int:
    import asyncio
    from datetime import datetime

    from acme_customer.adapters import dead_letters
    from acme_customer.adapters.migrations import apply_migrations

    settings = _settings_or_exit()
    if settings is None:
        return EXIT_CONFIGURATION
    since = datetime.fromisoformat(args.since.replace("Z", "+00:00")) if args.since else None
    topic = args.topic
    letters = asyncio.run(
        dead_letters.read_dead_letters(
            settings.kafka_bootstrap_servers, since, args.error_class, topic, security=settings.kafka_security
        )
    )
    apply_migrations(settings.database_url)
    replayed = dead_letters.replayed_positions(settings.database_url, topic)
    if args.action == "list":
        user_ids = asyncio.run(_user_ids(settings, [letter.value for letter in letters], topic))
        print(f"{'partition/offset':>16}  {'time (UTC)':20}  {'error class':20}  {'userId':36}  replayed  message")
        for letter, user_id in zip(letters, user_ids, strict=True):
            mark = "yes" if (letter.partition, letter.offset) in replayed else "no"
            print(
                f"{letter.partition:>7}/{letter.offset:<8}  {letter.timestamp:%Y-%m-%dT%H:%M:%S}Z  "
                f"{letter.error_class:20}  {user_id:36}  {mark:8}  {letter.error_message}"
            )
        print(f"{len(letters)} record(s)")
        return 0
    chosen = [letter for letter in letters if args.force or (letter.partition, letter.offset) not in replayed]
    skipped = len(letters) - len(chosen)
    if args.dry_run:
        print(f"would replay {len(chosen)} record(s); {skipped} already replayed (use --force to include them)")
        return 0
    sent = asyncio.run(
        dead_letters.replay(
            settings.kafka_bootstrap_servers, settings.database_url, chosen, topic, security=settings.kafka_security
        )
    )
    print(f"replayed {sent} record(s); skipped {skipped} already replayed")
    return 0


async def _user_ids(settings: Settings, values: list[bytes | None], dlq_topic: str) -> list[str]:
    """The userId of each record that can still be decoded ("-" otherwise); nothing else is shown."""
    from schema_registry.client import AsyncSchemaRegistryClient

    from acme_customer.adapters.codec import TopicCodec
    from acme_customer.adapters.dead_letters import user_id_of
    from acme_customer.adapters.kafka import CUSTOMER_EVENTS_DLQ, USER_EVENTS
    from acme_customer.adapters.schemas import CUSTOMER_REGISTERED, USER_REGISTERED
    from acme_customer.errors import AcmeCustomerError

    registry = AsyncSchemaRegistryClient(settings.schema_registry_url) if settings.schema_registry_url else None
    if dlq_topic == CUSTOMER_EVENTS_DLQ:
        codec = TopicCodec(CUSTOMER_EVENTS_DLQ.removesuffix(".dlq"), CUSTOMER_REGISTERED, registry)
    else:
        codec = TopicCodec(USER_EVENTS, USER_REGISTERED, registry)
    user_ids = []
    for value in values:
        try:
            user_ids.append(user_id_of(await codec.decode(value)))
        except AcmeCustomerError:
            user_ids.append("-")
    return user_ids


def _projections(_: argparse.Namespace) -> int:
    import asyncio

    from acme_customer.bootstrap import open_stores
    from acme_customer.service_layer.project_customers import rebuild_read_model

    settings = _settings_or_exit()
    if settings is None:
        return EXIT_CONFIGURATION

    async def rebuild() -> tuple[int, int]:
        stores = await open_stores(settings)
        try:
            return await rebuild_read_model(stores.event_pages(), stores.profiles, stores.read_model)
        finally:
            await stores.close()

    events, written = asyncio.run(rebuild())
    print(f"read model rebuilt from {events} CustomerRegistered event(s); {written} document(s) written")
    return 0


def _month(text: str) -> str:
    """``--since YYYY-MM`` as the YYYYMM of customer numbers."""
    import re

    match = re.fullmatch(r"([0-9]{4})-(0[1-9]|1[0-2])", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a month as YYYY-MM, got {text!r}")
    return match.group(1) + match.group(2)


class _Progress:
    """How far a walk is, on stderr: each part's total when it is done, and meanwhile a line every
    10 s (on a terminal, one line rewritten in place)."""

    def __init__(self, clock: Callable[[], float] | None = None, terminal: bool | None = None) -> None:
        import time

        self.clock = clock or time.monotonic
        self.started = self.last = self.clock()
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.counts: dict[str, int] = {}
        self.current: str | None = None
        self.printed: tuple[str, int] | None = None

    def __call__(self, what: str, done: int) -> None:
        if self.current is not None and what != self.current:
            self._line(self.current, done=True)
        self.current = what
        self.counts[what] = done
        now = self.clock()
        if now - self.last >= (0.2 if self.terminal else 10.0):
            self.last = now
            self._line(what, done=False)

    def _line(self, what: str, done: bool) -> None:
        line = f"{what}: {self.counts[what]:,} checked ({self.clock() - self.started:.0f} s)"
        if self.terminal:  # rewritten in place; a part's total stays on its own line
            print(f"\r{line:<70}", end="\n" if done else "", file=sys.stderr, flush=True)
        elif (what, self.counts[what]) != self.printed:  # not again when the last periodic line said it
            self.printed = (what, self.counts[what])
            print(line, file=sys.stderr, flush=True)

    def summary(self) -> str:
        """What was checked, in how long (the last part's total is printed too)."""
        if self.current is not None:
            self._line(self.current, done=True)
        checked = ", ".join(f"{count:,} {what}" for what, count in self.counts.items())
        return f"checked {checked or 'nothing'} in {self.clock() - self.started:.1f} s"


def _verify(args: argparse.Namespace) -> int:
    import asyncio

    from acme_customer.bootstrap import open_audit
    from acme_customer.service_layer.verify_stores import Findings, verify_stores

    settings = _settings_or_exit()
    if settings is None:
        return EXIT_CONFIGURATION
    progress = _Progress()

    async def verify() -> Findings:
        audit = await open_audit(settings)
        try:
            return await verify_stores(audit.command, audit.read_model, args.since, progress)
        finally:
            await audit.close()

    findings = asyncio.run(verify())
    for line in findings.lines():
        print(line)
    kinds = len(findings.kinds())
    print(f"verify: {f'{kinds} kind(s) of finding' if kinds else 'no findings'}; {progress.summary()}")
    return EXIT_FINDINGS if findings else EXIT_OK


def _reconcile(args: argparse.Namespace) -> int:
    import asyncio

    from acme_customer.bootstrap import open_audit, open_repairs
    from acme_customer.service_layer.reconcile_stores import Reconciliation, reconcile_stores

    settings = _settings_or_exit()
    if settings is None:
        return EXIT_CONFIGURATION
    progress = _Progress()

    async def reconcile() -> Reconciliation:
        audit = await open_audit(settings)
        try:
            if not args.apply:
                return await reconcile_stores(audit.command, audit.read_model, None, args.since, progress)
            async with open_repairs(settings, audit) as repairs:
                return await reconcile_stores(audit.command, audit.read_model, repairs, args.since, progress)
        finally:
            await audit.close()

    result = asyncio.run(reconcile())
    for line in result.lines():
        print(line)
    print(f"reconcile: {'applied' if args.apply else 'dry run, nothing changed'}; {progress.summary()}")
    if not args.apply and result.pending():
        return EXIT_REPAIRS_PENDING
    return EXIT_FINDINGS if result.unrepairable() else EXIT_OK


def _config(args: argparse.Namespace) -> int:
    import asyncio

    from acme_customer.config import Settings, described, secrets_in, shown
    from acme_customer.errors import ConfigError

    secrets = sorted({secret for secret in secrets_in(os.environ) if len(secret) >= 4}, key=len, reverse=True)

    def say(line: str, problem: bool = False) -> None:
        for secret in secrets:  # belt and braces: no secret in any line, whatever a message quotes
            line = line.replace(secret, "***")
        print(f"acme-customer: {line}" if problem else line, file=sys.stderr if problem else sys.stdout)

    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as error:
        for problem in error.problems:
            say(problem, problem=True)
        return EXIT_CONFIGURATION
    rows = described(settings) + [
        (name, shown(name, value)) for name, value in sorted(os.environ.items()) if name.startswith("OTEL_")
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        say(f"{name:<{width}}  {value}")
    if not args.connect:
        return EXIT_OK
    from acme_customer.bootstrap import check_dependencies

    checks = asyncio.run(check_dependencies(settings))
    for check in checks:
        if check.problem is None:
            say(f"{check.name}: {check.answer}")
        else:
            say(check.problem, problem=True)
    return EXIT_UNAVAILABLE if any(check.problem for check in checks) else EXIT_OK


def _demo(_: argparse.Namespace) -> int:
    from acme_customer.entrypoints.demo import run

    return run()


def _bench(args: argparse.Namespace) -> int:
    # The benchmark drives real workers with the test harness (tests/e2e) and lives beside it in the
    # checkout (benchmarks/), not in the installed package: it is a development tool, like devstack.
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import importlib

    try:
        # by name: the benchmark is development code outside the package (and outside mypy --strict)
        bench = importlib.import_module("benchmarks.bench")
    except ImportError as error:
        print(f"acme-customer bench: needs a checkout with the dev requirements installed ({error})", file=sys.stderr)
        return 2
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "MONGODB_URI", "SCHEMA_REGISTRY_URL"):
        if not os.environ.get(name):
            print(f"acme-customer bench: {name} is not set (set -a; . .devstack/env; set +a)", file=sys.stderr)
            return 2
    given = {
        name: value
        for name, value in {
            "events": args.events,
            "runs": args.runs,
            "batch_size": args.batch_size,
            "per_event_events": args.per_event_events,
            "latency_seconds": args.latency_seconds,
            "offered_rate": args.offered_rate,
            "latency_workers": args.latency_workers,
            "pgbench_seconds": args.pgbench_seconds,
            "profile_dir": args.profile,
        }.items()
        if value is not None
    }
    given["results_dir"] = args.results_dir or bench.DEFAULT_RESULTS
    given["figure"] = not args.no_figure
    options = bench.Options.quick(**given) if args.quick else bench.Options(**given)
    return int(bench.main(options))


def _worker(args: argparse.Namespace) -> int:
    from acme_customer.config import Settings
    from acme_customer.errors import ConfigError

    try:  # checked here first: Faust reads WEB_PORT itself, at import, and a bad one is its traceback
        Settings.from_env(os.environ)
    except ConfigError as error:
        for problem in error.problems:  # as the app's own check words it
            print(f"acme-customer: configuration error: {problem}", file=sys.stderr)
        return EXIT_CONFIGURATION
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
    topics.add_argument(
        "--partitions",
        type=_positive,
        help="partitions of the input and output topics: created with this many (default 12), and existing ones"
        " (with the processed-eventId table's changelog) grown to it; never shrunk",
    )
    topics.set_defaults(handler=_topics)

    schemas = commands.add_parser("schemas", help="check avro/*.avsc against their committed history")
    schemas.add_argument("action", choices=["check"])
    schemas.set_defaults(handler=_schemas)

    dlq = commands.add_parser("dlq", help="list or replay a dead-letter queue")
    dlq.add_argument("action", choices=["list", "replay"])
    dlq.add_argument(
        "--topic",
        choices=["identity.user.events.dlq", "customer.events.dlq"],
        default="identity.user.events.dlq",
        help="which DLQ: the creation side's (default) or the projector's",
    )
    dlq.add_argument("--since", help="only records dead-lettered at or after this ISO time (UTC)")
    dlq.add_argument("--error-class", help="only records of this error class (x-error-class)")
    dlq.add_argument("--force", action="store_true", help="replay records that were replayed before")
    dlq.add_argument("--dry-run", action="store_true", help="say what would be replayed, send nothing")
    dlq.set_defaults(handler=_dlq)

    projections = commands.add_parser("projections", help="rebuild the MongoDB read model from the event store")
    projections.add_argument("action", choices=["rebuild"])
    projections.set_defaults(handler=_projections)

    verify = commands.add_parser("verify", help="check PostgreSQL, the event store and MongoDB against the invariants")
    verify.add_argument("--since", type=_month, metavar="YYYY-MM", help="only customers of this month and later")
    verify.set_defaults(handler=_verify)

    reconcile = commands.add_parser("reconcile", help="repair what verify finds, from PostgreSQL (dry run by default)")
    reconcile.add_argument("--apply", action="store_true", help="repair; without it, only say what would be done")
    reconcile.add_argument("--since", type=_month, metavar="YYYY-MM", help="only customers of this month and later")
    reconcile.set_defaults(handler=_reconcile)

    config = commands.add_parser("config", help="show the effective configuration (secrets masked) and its problems")
    config.add_argument("action", choices=["check"])
    config.add_argument("--connect", action="store_true", help="also ask each dependency whether it answers")
    config.set_defaults(handler=_config)

    demo = commands.add_parser("demo", help="run the main job end to end on the local stack and show the result")
    demo.set_defaults(handler=_demo)

    bench = commands.add_parser(
        "bench",
        help="the pipeline against the database and read-model limits (docs/performance.md)",
        description="Measures the pipeline with real workers on the stack the environment names and compares it "
        "with what PostgreSQL (the same SQL directly, pgbench) and the Mongo server allow; prints one table and "
        "writes bench/results/<timestamp>.json and .png. Defaults: 20,000 events, 3 runs, medians.",
    )
    bench.add_argument("--quick", action="store_true", help="2,000 events, one run, a 5 s latency phase (the tests')")
    bench.add_argument("--events", type=int, help="events in the batched burst (default 20,000)")
    bench.add_argument("--runs", type=int, help="runs of each figure; the median is reported (default 3)")
    bench.add_argument("--batch-size", type=int, help="BATCH_SIZE of the batched runs (default: the service's, 100)")
    bench.add_argument("--per-event-events", type=int, help="events in the BATCH_SIZE=1 burst (default 2,000)")
    bench.add_argument("--latency-seconds", type=float, help="length of the offered-load phase (default 60)")
    bench.add_argument("--offered-rate", type=float, help="events/s offered in the latency phase (default 500)")
    bench.add_argument("--latency-workers", type=int, help="workers in the latency phase (default 1)")
    bench.add_argument("--pgbench-seconds", type=float, help="length of each pgbench run (default 10)")
    bench.add_argument("--results-dir", type=Path, help="where the JSON and PNG go (default bench/results)")
    bench.add_argument("--profile", type=Path, metavar="DIR", help="py-spy flame graphs of the first runs into DIR")
    bench.add_argument("--no-figure", action="store_true", help="no PNG (without matplotlib)")
    bench.set_defaults(handler=_bench)

    worker = commands.add_parser("worker", help="run the Faust worker (same as faust -A acme_customer.app worker)")
    worker.add_argument("faust_args", nargs=argparse.REMAINDER)
    worker.set_defaults(handler=_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    from acme_customer.errors import AcmeCustomerError, ConfigError

    args = build_parser().parse_args(argv)
    # aiokafka logs each refused connection at ERROR before raising; the error is ours to report, once
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return int(args.handler(args))
    except ConfigError as error:
        for problem in error.problems:
            print(f"acme-customer: {problem}", file=sys.stderr)
        return EXIT_CONFIGURATION
    except AcmeCustomerError as error:  # a dependency unreachable or refusing: one line, no traceback
        print(f"acme-customer: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE


if __name__ == "__main__":
    raise SystemExit(main())
