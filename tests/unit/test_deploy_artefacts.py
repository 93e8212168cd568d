"""deploy/ held to what the service reads, serves and starts, by what can run here (no Docker, no cluster).

Nothing under deploy/ is run by CI, so this test parses ``deploy/docker-compose.yml``,
``deploy/k8s/*.yaml`` and the ``Dockerfile`` (the image both use) and checks them against the code:

- **Names.** Every environment variable the compose file or the manifests give our containers (compose
  ``environment``, ConfigMap data, the keys of a Secret taken with ``envFrom``, a container's ``env``) is
  one the service reads: ``config.ENV_VARS`` (what ``Settings.from_env`` reads, held to exactly that in
  test_config.py), ``config.FAUST_ENV_VARS`` (read by Faust itself), or a variable that the
  OpenTelemetry API or SDK declares (their ``environment_variables`` modules).
- **Values.** What each container gets (the image's ENV, then the artefact's) passes ``Settings.from_env``,
  the worker's own check at start, with the example Secrets as they would be filled in.
- **Ports.** The port a worker publishes (containerPort, the compose mapping, EXPOSE), its probes, its
  healthcheck and the Prometheus annotation are the one the worker listens on: WEB_PORT as
  ``from_env`` reads it (``--web-port`` on the command wins, as in Faust), on a WEB_HOST other than loopback.
- **Paths.** Probes and healthchecks ask for routes the app registers (read from the app module the
  command starts, in a subprocess); startup and liveness ``/health``, readiness ``/ready`` (DESIGN "HTTP").
- **Commands.** Each container's command (or the image's CMD) is a real entry point: ``faust -A <module>
  worker ...`` with faust-streaming's console script, parsed by Faust's own CLI, whose module holds a
  ``faust.App`` named ``app``; or ``acme-customer <command>``, parsed by our CLI's parser.

**The rule for secrets.** A value is a secret when its name says so (``config.is_secret_name``: TOKEN,
PASSWORD, SECRET, ...; not a ``*_FILE`` variable, which holds the path of a file holding the secret) or
when it is a URL with a password or a secret query parameter (``config.without_secrets`` masks one).

- Kubernetes: secrets are only in a Secret. No ConfigMap holds one, no literal ``env`` value does; the
  containers take them from a Secret (``envFrom``/``secretKeyRef``, or a Secret volume). The read API's
  tokens come from a Secret: API_TOKENS from one, or API_TOKENS_FILE naming a file of a mounted Secret
  volume (the whole directory: a ``subPath`` mount never sees a rotation).
- docker-compose runs a throwaway local stack, and a secret there must be a local dev default: a URL's
  password only for a host that is a service of the same file, and the very password that service is
  created with; a secret-named variable of our containers only as ``${NAME:-default}`` (a real value
  comes from the shell) with a default that says ``example``. The stores' own settings that create those
  throwaway credentials (``POSTGRES_PASSWORD``) are local by definition.
- The image's ENV holds no secret.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import opentelemetry.environment_variables
import opentelemetry.sdk.environment_variables
import pytest
import yaml
from faust.cli.faust import cli as faust_cli

from acme_customer.config import ENV_VARS, FAUST_ENV_VARS, MASK, Settings, is_secret_name, without_secrets
from acme_customer.entrypoints.cli import build_parser
from acme_customer.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
K8S_FILES = sorted((DEPLOY / "k8s").glob("*.yaml"))
LOOPBACK = ("127.0.0.1", "localhost", "::1")
LIVENESS, READINESS = "/health", "/ready"  # DESIGN "HTTP (Faust web views)"
A_REAL_TOKEN = "0123456789abcdef0123456789abcdef"  # what `openssl rand -hex 16` gives


def _opentelemetry_names() -> set[str]:
    modules = (opentelemetry.environment_variables, opentelemetry.sdk.environment_variables)
    return {value for module in modules for name, value in vars(module).items() if name.startswith("OTEL_")}


READ_BY_THE_SERVICE = frozenset(ENV_VARS) | frozenset(FAUST_ENV_VARS) | _opentelemetry_names()


def holds_secret(name: str, value: str) -> bool:
    masked = MASK in without_secrets(value) and MASK not in value  # a URL's password or secret parameter
    return (is_secret_name(name) and not name.endswith("_FILE")) or masked


# --- reading the artefacts ----------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = (line.strip() for line in text.splitlines())
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines if line and line[0] != "#")
    ]


def image_instruction(name: str) -> str:
    found = [arguments for instruction, arguments in dockerfile() if instruction == name]
    assert found, f"the Dockerfile has no {name}"
    return found[-1]  # the last one counts


def image_env() -> dict[str, str]:
    return dict(
        pair.split("=", 1)
        for arguments in (a for i, a in dockerfile() if i == "ENV")
        for pair in shlex.split(arguments)
    )


def image_cmd() -> list[str]:
    command: list[str] = json.loads(image_instruction("CMD"))  # the exec form: no shell between
    return command


def k8s_documents() -> list[dict[str, Any]]:
    return [document for path in K8S_FILES for document in yaml.safe_load_all(path.read_text()) if document]


def k8s_object(kind: str, name: str) -> dict[str, Any] | None:
    return next((doc for doc in k8s_documents() if doc["kind"] == kind and doc["metadata"]["name"] == name), None)


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    data = {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}
    return {**data, **(secret.get("stringData") or {})}


def deployments() -> list[dict[str, Any]]:
    found = [document for document in k8s_documents() if document["kind"] == "Deployment"]
    assert found, "no Deployment under deploy/k8s"
    return found


def pod_containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod template, container) for every container and initContainer of every Deployment."""
    for deployment in deployments():
        template = deployment["spec"]["template"]
        for container in [*template["spec"].get("initContainers", []), *template["spec"]["containers"]]:
            yield template, container


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def our_compose_services() -> dict[str, dict[str, Any]]:
    """The compose services that run our image (built from the Dockerfile)."""
    services = {name: service for name, service in compose()["services"].items() if "build" in service}
    assert services, "no compose service builds the image"
    return services


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {name: "" if value is None else str(value) for name, value in environment.items()}


_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")


def interpolated(value: str) -> str:
    """The value compose uses with nothing set in the shell: ``${NAME:-default}`` is its default."""

    def default(match: re.Match[str]) -> str:
        assert match["default"] is not None, f"{match[0]} has no default: compose needs it from the shell"
        return match["default"]

    return _INTERPOLATION.sub(default, value)


# --- what the service is ------------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """What a container command starts: a worker (its app module and the web options it overrides) or a CLI command."""

    command: list[str]
    app_module: str | None = None  # a worker's
    app_attribute: str = "app"
    web_port: int | None = None  # --web-port, which wins over WEB_PORT
    web_bind: str | None = None
    cli_command: str | None = None


def started_by(command: list[str]) -> Started:
    """What ``command`` starts, or an assertion error saying why it is no entry point of the service."""
    assert command, "no command"
    program, arguments = command[0], command[1:]
    scripts = {script.name: script.value for script in entry_points(group="console_scripts", name=program)}
    assert program in scripts, f"{command}: {program!r} is no console script installed with the service"
    if program == "faust":
        assert scripts[program] == "faust.cli.faust:cli", f"{command}: not faust-streaming's faust"
        context = faust_cli.make_context("faust", list(arguments))  # Faust's own parser: a bad option is an error
        name, worker, rest = faust_cli.resolve_command(context, [*context.protected_args, *context.args])
        assert name == "worker" and worker is not None, f"{command}: not `faust ... worker`"
        options = worker.make_context("worker", list(rest), parent=context).params
        module, _, attribute = str(context.params["app"]).partition(":")
        return Started(command, module, attribute or "app", options["web_port"], options["web_bind"])
    assert scripts[program] == "acme_customer.entrypoints.cli:main", f"{command}: {program} is not our CLI"
    try:
        parsed = build_parser().parse_args(arguments)
    except SystemExit:
        pytest.fail(f"{command}: our CLI refuses these arguments")
    if parsed.command != "worker":
        return Started(command, cli_command=parsed.command)
    worker = started_by(["faust", "-A", "acme_customer.app", "worker", *parsed.faust_args])  # what _worker runs
    return replace(worker, command=command)


_SERVED = """
import importlib, json, sys
import faust
app = getattr(importlib.import_module(sys.argv[1]), sys.argv[2])
routes = {route.resource.canonical for route in app.web.web_app.router.routes() if route.resource is not None}
print(json.dumps({
    "is_faust_app": isinstance(app, faust.App),
    "routes": sorted(routes),
    "broker_session_timeout": app.conf.broker_session_timeout,
    "datadir": str(app.conf.datadir),
}))
"""


@functools.cache
def served(module: str, attribute: str) -> dict[str, Any]:
    """What the app a worker command names really is and routes (imported in a process of its own:
    the import reads the environment and configures the app)."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "KAFKA_BOOTSTRAP_SERVERS": "localhost:9092",
        "DATABASE_URL": "postgresql://localhost/customer",
        "MONGODB_URI": "mongodb://localhost",
        "EVENT_FORMAT": "json",
        "BROKER_SESSION_TIMEOUT": "17",  # FAUST_ENV_VARS: read by Faust, left alone by the app's hook
    }
    done = subprocess.run(
        [sys.executable, "-c", _SERVED, module, attribute], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"importing {module} failed:\n{done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def listening(started: Started, env: dict[str, str]) -> tuple[int, str]:
    """The port and address a worker listens on with this command and environment."""
    settings = Settings.from_env(env)
    return started.web_port or settings.web_port, started.web_bind or settings.web_host


def check_worker_app(started: Started) -> set[str]:
    """The routes of the app a worker command starts (after checking it is the service's app)."""
    assert started.app_module is not None
    app = served(started.app_module, started.app_attribute)
    assert app["is_faust_app"], f"{started.command}: {started.app_module}.{started.app_attribute} is no faust.App"
    return set(app["routes"])


# --- the names and the values ---------------------------------------------------------------------


def test_the_service_reads_what_the_artefacts_may_set() -> None:
    assert {
        "KAFKA_BOOTSTRAP_SERVERS",
        "API_TOKENS_FILE",
        "OTEL_SERVICE_NAME",
        "OTEL_PROPAGATORS",
    } <= READ_BY_THE_SERVICE
    assert "OTEL_TRACE_EXPORTER" not in READ_BY_THE_SERVICE  # a near miss is still a miss


def test_faust_reads_its_variables_and_the_app_leaves_them_alone() -> None:
    assert served("acme_customer.app", "app")["broker_session_timeout"] == 17.0


def test_every_variable_compose_gives_our_containers_is_read_by_the_service() -> None:
    for name, service in our_compose_services().items():
        unknown = sorted(set(compose_environment(service)) - READ_BY_THE_SERVICE)
        assert not unknown, f"compose service {name} sets {unknown}, which the service never reads"


def test_every_variable_the_manifests_give_our_containers_is_read_by_the_service() -> None:
    for _, container in pod_containers():
        names = set(manifest_env(container)[0])
        unknown = sorted(names - READ_BY_THE_SERVICE)
        assert not unknown, f"container {container['name']} gets {unknown}, which the service never reads"
    for document in k8s_documents():
        if document["kind"] == "ConfigMap":
            unknown = sorted(set(document.get("data") or {}) - READ_BY_THE_SERVICE)
            assert not unknown, f"ConfigMap {document['metadata']['name']} holds {unknown}, never read"


def manifest_env(container: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """The variables the manifests give ``container`` (later ones win, as in Kubernetes) and where each comes from."""
    env: dict[str, str] = {}
    source: dict[str, str] = {}
    for item in container.get("envFrom", []):
        if "configMapRef" in item:
            config_map = k8s_object("ConfigMap", item["configMapRef"]["name"])
            assert config_map is not None, f"{container['name']}: no ConfigMap {item['configMapRef']['name']}"
            values, kind = dict(config_map.get("data") or {}), "configmap"
        else:
            secret = k8s_object("Secret", item["secretRef"]["name"])
            assert secret is not None, f"{container['name']}: no (example) Secret {item['secretRef']['name']}"
            values, kind = secret_data(secret), "secret"
        env.update(values)
        source.update(dict.fromkeys(values, kind))
    for item in container.get("env", []):
        name = item["name"]
        if "value" in item:
            env[name], source[name] = str(item["value"]), "literal"
            continue
        reference = item["valueFrom"].get("secretKeyRef") or item["valueFrom"]["configMapKeyRef"]
        kind = "secret" if "secretKeyRef" in item["valueFrom"] else "configmap"
        holder = k8s_object("Secret" if kind == "secret" else "ConfigMap", reference["name"])
        assert holder is not None, f"{container['name']}: {name} from a missing {kind} {reference['name']}"
        env[name] = (secret_data(holder) if kind == "secret" else holder["data"])[reference["key"]]
        source[name] = kind
    return env, source


def mounted_secrets(pod: dict[str, Any], container: dict[str, Any], root: Path) -> dict[str, Path]:
    """The Secret volumes ``container`` mounts, written under ``root``: mount path -> the local directory."""
    volumes = {volume["name"]: volume for volume in pod["spec"].get("volumes", [])}
    written: dict[str, Path] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "secret" not in volume:
            continue
        secret = k8s_object("Secret", volume["secret"]["secretName"])
        if secret is None:
            assert volume["secret"].get("optional"), f"volume {mount['name']}: no (example) Secret and not optional"
            continue
        assert "subPath" not in mount, f"{mount['name']}: a subPath mount never sees the Secret's updates"
        directory = root / mount["name"]
        directory.mkdir(parents=True)
        data = secret_data(secret)
        items = volume["secret"].get("items") or [{"key": key, "path": key} for key in data]
        for item in items:
            (directory / item["path"]).write_text(data[item["key"]])
        written[mount["mountPath"].rstrip("/")] = directory
    return written


def pod_env(pod: dict[str, Any], container: dict[str, Any], root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """What ``container`` sees: the image's ENV, then the manifests', with paths into its Secret volumes made local."""
    env, source = manifest_env(container)
    mounts = mounted_secrets(pod, container, root)
    for name, value in env.items():
        for mount_path, directory in mounts.items():
            if value.startswith(mount_path + "/"):
                env[name] = str(directory / value[len(mount_path) + 1 :])
    return {**image_env(), **env}, source


def with_a_real_token(env: dict[str, str], root: Path) -> dict[str, str]:
    """``env`` with the file API_TOKENS_FILE names holding a real token, as an operator fills the Secret in
    (the example's placeholder is refused on purpose); the file must be one of a mounted Secret volume."""
    if env.get("API_TOKENS_FILE"):
        tokens_file = Path(env["API_TOKENS_FILE"])
        assert root in tokens_file.parents, f"API_TOKENS_FILE={tokens_file}: in no mounted Secret volume"
        assert tokens_file.is_file(), f"API_TOKENS_FILE: the mounted Secret has no key {tokens_file.name!r}"
        tokens_file.write_text(f"# callers send: Authorization: Bearer <token>\n{A_REAL_TOKEN}\n")
    return env


def test_every_container_of_the_manifests_passes_the_services_own_check_of_its_settings(tmp_path: Path) -> None:
    for number, (pod, container) in enumerate(pod_containers()):
        env = with_a_real_token(pod_env(pod, container, tmp_path / str(number))[0], tmp_path)
        try:
            Settings.from_env(env)
        except ConfigError as error:
            pytest.fail(f"container {container['name']} would stop at start: {error}")


def test_every_container_compose_runs_from_our_image_passes_the_services_own_check_of_its_settings() -> None:
    for name, service in our_compose_services().items():
        env = {key: interpolated(value) for key, value in compose_environment(service).items()}
        try:
            Settings.from_env({**image_env(), **env})
        except ConfigError as error:
            pytest.fail(f"compose service {name} would stop at start: {error}")


# --- the read API's tokens ------------------------------------------------------------------------


def workers() -> Iterator[tuple[dict[str, Any], dict[str, Any], Started]]:
    """(pod spec, container, what it starts) for every worker container of the manifests."""
    found = False
    for pod, container in pod_containers():
        started = started_by(container.get("command", image_cmd()) + container.get("args", []))
        if started.app_module is not None:
            found = True
            yield pod, container, started
    assert found, "no Deployment runs a worker"


def test_the_workers_read_api_tokens_come_from_a_secret(tmp_path: Path) -> None:
    for number, (pod, container, _) in enumerate(workers()):
        env, source = pod_env(pod, container, tmp_path / str(number))
        if env.get("API_TOKENS_FILE"):
            assert not env.get("API_TOKENS"), "API_TOKENS and API_TOKENS_FILE both: the worker stops"
            with_a_real_token(env, tmp_path)
        else:
            assert env.get("API_TOKENS"), f"{container['name']}: neither API_TOKENS nor API_TOKENS_FILE: API disabled"
            assert source["API_TOKENS"] == "secret", "API_TOKENS must come from a Secret"
        assert Settings.from_env(env).api_tokens, f"{container['name']}: the read API would be disabled"


def test_the_example_token_placeholder_stops_the_worker_instead_of_serving_a_known_token(tmp_path: Path) -> None:
    for number, (pod, container, _) in enumerate(workers()):
        env, _ = pod_env(pod, container, tmp_path / str(number))
        with pytest.raises(ConfigError, match="API_TOKENS"):
            Settings.from_env(env)  # secret.example.yaml promises this


def test_compose_serves_the_read_api_with_a_token_by_default() -> None:
    service = compose_worker()[1]
    env = {key: interpolated(value) for key, value in compose_environment(service).items()}
    assert Settings.from_env({**image_env(), **env}).api_tokens


# --- ports, paths and commands ----------------------------------------------------------------


def port_number(port: int | str, container: dict[str, Any]) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    named = {item.get("name"): item["containerPort"] for item in container.get("ports", [])}
    assert port in named, f"{container['name']} has no port named {port!r}"
    return int(named[port])


def test_every_command_of_the_manifests_is_a_real_entry_point() -> None:
    for _, container in pod_containers():
        started = started_by(container.get("command", image_cmd()) + container.get("args", []))
        if started.app_module is not None:
            check_worker_app(started)


def test_the_workers_of_the_manifests_listen_where_their_ports_probes_and_service_point(tmp_path: Path) -> None:
    for number, (pod, container, started) in enumerate(workers()):
        env = with_a_real_token(pod_env(pod, container, tmp_path / str(number))[0], tmp_path)
        port, host = listening(started, env)
        routes = check_worker_app(started)
        assert host not in LOOPBACK, f"{container['name']}: listens on {host}, which no probe can reach"
        assert port in {item["containerPort"] for item in container.get("ports", [])}, "the port is not declared"
        expected = {"startupProbe": LIVENESS, "livenessProbe": LIVENESS, "readinessProbe": READINESS}
        for probe, path in expected.items():
            assert probe in container, f"{container['name']} has no {probe}"
            request = container[probe]["httpGet"]
            assert request["path"] == path and path in routes, f"{probe}: {request['path']} (the app routes {routes})"
            assert port_number(request["port"], container) == port, f"{probe}: not the port the worker listens on"
        annotations = pod["metadata"].get("annotations", {})
        if "prometheus.io/port" in annotations:
            assert int(annotations["prometheus.io/port"]) == port, "Prometheus would scrape another port"
            assert annotations.get("prometheus.io/path", "/metrics") in routes, "Prometheus would scrape no route"


def test_a_worker_on_a_read_only_root_filesystem_has_a_writable_faust_data_directory() -> None:
    for _, container, started in workers():
        if not container.get("securityContext", {}).get("readOnlyRootFilesystem"):
            continue
        assert started.app_module is not None
        datadir = Path(served(started.app_module, started.app_attribute)["datadir"])  # relative: to the workdir
        datadir = Path(container.get("workingDir") or image_instruction("WORKDIR")) / datadir
        writable = [
            Path(mount["mountPath"]) for mount in container.get("volumeMounts", []) if not mount.get("readOnly")
        ]
        assert any(mount == datadir or mount in datadir.parents for mount in writable), f"Faust writes {datadir}"


def test_the_service_and_the_budget_select_the_workers_and_reach_their_port() -> None:
    labels = [deployment["spec"]["template"]["metadata"]["labels"] for deployment in deployments()]
    containers = [
        container for deployment in deployments() for container in deployment["spec"]["template"]["spec"]["containers"]
    ]
    for document in k8s_documents():
        if document["kind"] not in ("Service", "PodDisruptionBudget"):
            continue
        spec = document["spec"]
        selector = spec["selector"] if document["kind"] == "Service" else spec["selector"]["matchLabels"]
        assert any(selector.items() <= pod_labels.items() for pod_labels in labels), (
            f"{document['kind']} selects no pod"
        )
        for service_port in spec.get("ports", []):
            target = service_port.get("targetPort", service_port["port"])
            assert any(
                target in (item.get("name"), item["containerPort"]) for c in containers for item in c.get("ports", [])
            ), f"Service port {service_port['name']}: no container port {target!r}"


def test_the_compose_worker_listens_where_its_port_mapping_and_healthcheck_point() -> None:
    name, service, started = compose_worker()
    env = {**image_env(), **{key: interpolated(value) for key, value in compose_environment(service).items()}}
    port, host = listening(started, env)
    routes = check_worker_app(started)
    assert host not in LOOPBACK, f"compose {name}: listens on {host}, unreachable from the host's port mapping"
    container_ports = {int(str(mapping).split("/")[0].rsplit(":", 1)[-1]) for mapping in service.get("ports", [])}
    assert port in container_ports, f"compose {name}: publishes {container_ports}, listens on {port}"
    check = " ".join(service["healthcheck"]["test"][1:])
    urls = re.findall(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/[^'\"\s)]*)", check)
    assert urls, f"compose {name}: the healthcheck asks no local URL"
    for url_port, path in urls:
        assert int(url_port) == port and path in routes, f"compose {name}: healthcheck on {url_port}{path}"


def compose_worker() -> tuple[str, dict[str, Any], Started]:
    """The compose service that runs the worker (the image's CMD unless it says otherwise)."""
    workers = [
        (name, service, started_by(service.get("command") or image_cmd()))
        for name, service in our_compose_services().items()
    ]
    found = [worker for worker in workers if worker[2].app_module is not None]
    assert len(found) == 1, f"compose runs {len(found)} worker services"
    return found[0]


def test_every_command_compose_runs_from_our_image_is_a_real_entry_point() -> None:
    for _, service in our_compose_services().items():
        started = started_by(service.get("command") or image_cmd())
        if started.app_module is not None:
            check_worker_app(started)


def test_the_image_starts_the_worker_on_the_port_it_exposes_and_checks_a_route_it_serves() -> None:
    started = started_by(image_cmd())
    routes = check_worker_app(started)
    assert started.web_port is None, "the image's CMD should leave the port to WEB_PORT"
    required = {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "DATABASE_URL": "postgresql://db/c", "MONGODB_URI": "mongodb://m"}
    port, host = listening(started, {**image_env(), **required, "EVENT_FORMAT": "json"})
    assert host not in LOOPBACK, "the image's worker would listen on loopback only"
    assert [int(exposed) for exposed in image_instruction("EXPOSE").split()] == [port]
    check = image_instruction("HEALTHCHECK")
    urls = re.findall(r"http://(?:127\.0\.0\.1|localhost):([^/]+)(/[^'\"\s)]*)", check)
    assert urls, "the image's HEALTHCHECK asks no local URL"
    for url_port, path in urls:
        assert path in routes, f"the image's HEALTHCHECK asks {path}, the app routes {routes}"
        assert url_port == str(port) or "WEB_PORT" in check, f"the HEALTHCHECK asks port {url_port}, not {port}"


# --- secrets ------------------------------------------------------------------------------------


def test_no_configmap_holds_a_secret() -> None:
    for document in k8s_documents():
        if document["kind"] == "ConfigMap":
            secret = [name for name, value in (document.get("data") or {}).items() if holds_secret(name, str(value))]
            assert not secret, (
                f"ConfigMap {document['metadata']['name']} holds secrets: {secret} (put them in the Secret)"
            )


def test_no_literal_value_of_the_manifests_is_a_secret() -> None:
    for _, container in pod_containers():
        for item in container.get("env", []):
            if "value" in item:
                assert not holds_secret(item["name"], str(item["value"])), f"{container['name']}: {item['name']}"


def test_the_image_holds_no_secret() -> None:
    assert not [name for name, value in image_env().items() if holds_secret(name, value)]


def test_compose_holds_only_local_dev_defaults_as_secrets() -> None:
    services = compose()["services"]
    ours = our_compose_services()
    for name, service in services.items():
        for variable, value in compose_environment(service).items():
            if not holds_secret(variable, value):
                continue
            where = f"compose {name}: {variable}"
            if "://" in value:
                url = urlsplit(interpolated(value))
                assert url.hostname in services, f"{where}: a credential for {url.hostname}, not a store of this file"
                store = services[url.hostname]
                own = {v for n, v in compose_environment(store).items() if is_secret_name(n)}
                assert url.password in own, f"{where}: not the password that compose's {url.hostname} is created with"
            elif name in ours:
                match = _INTERPOLATION.fullmatch(value)
                assert match and match["name"] == variable, f"{where}: must be ${{{variable}:-default}}"
                assert "example" in (match["default"] or ""), f"{where}: the default must say it is an example"
            # else: a store's own setting creating its throwaway credential (e.g. POSTGRES_PASSWORD)
