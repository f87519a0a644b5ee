"""docker-compose.yml's default profile run as processes on this machine (issue 13 item 9; no container engine here).

What compose would do, done by hand and driven by the file itself:

* the services of the default profile that are built from the repository (``build: .``) — the others are images
  (PostgreSQL, RabbitMQ, the proxy) for which the test's own servers stand in;
* each one's environment: the image's ``ENV`` lines (Dockerfile), then the service's ``environment`` with the
  compose interpolation (``${VAR}``, ``${VAR:-default}``, ``${VAR:?message}``, ``$$``) resolved;
* its ``secrets:`` as files (0600) holding the values the test gives, its volumes and configs as local paths
  (a named volume is one directory shared by every service that mounts it, as on one Docker host);
* ``depends_on`` conditions, ``deploy.replicas``, ``restart`` (a killed replica is restarted only if the policy
  says compose would), ``healthcheck`` commands run as the engine runs them;
* what containers give each replica for free and one host does not: its own port (``--port`` and ``*_PORT``
  settings get a free port each) and its own host name (the worker's heartbeat file, named after the host name
  by default, gets a file of the replica's own).

Host names of compose services are mapped to 127.0.0.1 (``HostMap``): nothing else is hard-coded here.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import yaml

from tests.e2e.cli_support import hub_executable
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
LONG_RUNNING = "long-running"

# --- reading the file -----------------------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.DOTALL)


class ComposeError(AssertionError):
    """The compose file cannot be run as written (an unset required variable, an unknown dependency …)."""


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's variable interpolation of one string."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("plain"):
            return variables.get(match.group("plain"), "")
        braced = _BRACED.match(match.group("braced") or "")
        if braced is None:
            raise ComposeError(f"invalid interpolation {match.group(0)!r}")
        name, op, arg = braced.group("name"), braced.group("op"), braced.group("arg") or ""
        present = name in variables
        set_non_empty = present and variables[name] != ""
        if op is None:
            return variables.get(name, "")
        if op in (":-", "-"):
            return variables[name] if (set_non_empty if op == ":-" else present) else interpolate(arg, variables)
        if op in (":?", "?"):
            if not (set_non_empty if op == ":?" else present):
                raise ComposeError(f"required variable {name} is missing a value: {arg}")
            return variables[name]
        if op in (":+", "+"):
            return interpolate(arg, variables) if (set_non_empty if op == ":+" else present) else ""
        raise ComposeError(f"invalid interpolation {match.group(0)!r}")

    return _INTERPOLATION.sub(replace, value)


def _interpolate_all(node: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [_interpolate_all(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_all(value, variables) for key, value in node.items()}
    return node


def load_compose(path: Path, variables: Mapping[str, str]) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return dict(_interpolate_all(document, variables))


def dockerfile_env(path: Path) -> dict[str, str]:
    """The ``ENV key=value …`` lines of a Dockerfile (what every container of the image starts with)."""
    env: dict[str, str] = {}
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        words = line.strip().split(None, 1)
        if len(words) == 2 and words[0].upper() == "ENV":
            for item in shlex.split(words[1]):
                if "=" in item:
                    key, value = item.split("=", 1)
                    env[key] = interpolate(value, env)
    return env


@dataclass(frozen=True)
class Service:
    """One service of the file as the test runs it."""

    name: str
    command: list[str]
    environment: dict[str, str]
    secrets: dict[str, str]  # target path in the container → secret name
    mounts: dict[str, tuple[str, str]]  # target path → (kind: volume|bind|config, source)
    depends_on: dict[str, str]  # service → condition
    replicas: int
    restart: str
    healthcheck: list[str] | None  # argv, or ["sh", "-c", …] for CMD-SHELL
    profiles: tuple[str, ...]

    @property
    def kind(self) -> str:
        return "job" if self.restart in ("no", "") and self.replicas == 1 and not self.healthcheck else LONG_RUNNING


def _environment(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return {str(k): "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in raw.items()}
    env = {}
    for item in raw:
        key, _, value = str(item).partition("=")
        env[key] = value
    return env


def _command(raw: Any) -> list[str]:
    if raw is None:
        raise ComposeError("a service built from the repository has no command (the image's CMD is not read)")
    return shlex.split(raw) if isinstance(raw, str) else [str(part) for part in raw]


def _depends_on(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if isinstance(raw, list):
        return {str(name): "service_started" for name in raw}
    return {str(name): str((spec or {}).get("condition", "service_started")) for name, spec in raw.items()}


def _mounts(service: dict[str, Any], document: dict[str, Any]) -> dict[str, tuple[str, str]]:
    mounts: dict[str, tuple[str, str]] = {}
    named = set(document.get("volumes") or {})
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target = rest.split(":")[0]
            kind = "volume" if source in named or not source.startswith((".", "/", "~")) else "bind"
        else:
            source, target = str(volume.get("source", "")), str(volume["target"])
            kind = str(volume.get("type", "volume"))
        mounts[target] = (kind, source)
    configs = document.get("configs") or {}
    for config in service.get("configs") or []:
        name = config if isinstance(config, str) else str(config["source"])
        target = f"/{name}" if isinstance(config, str) else str(config.get("target", f"/{name}"))
        file = (configs.get(name) or {}).get("file")
        mounts[target] = ("bind" if file else "config", str(file or name))
    return mounts


def _secrets(service: dict[str, Any]) -> dict[str, str]:
    found = {}
    for secret in service.get("secrets") or []:
        if isinstance(secret, str):
            found[f"/run/secrets/{secret}"] = secret
        else:
            target = str(secret.get("target") or secret["source"])
            found[target if target.startswith("/") else f"/run/secrets/{target}"] = str(secret["source"])
    return found


def _healthcheck(raw: Any) -> list[str] | None:
    if not raw or raw.get("disable"):
        return None
    test = raw.get("test")
    if isinstance(test, str):
        return ["sh", "-c", test]
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD-SHELL":
        return ["sh", "-c", " ".join(test[1:])]
    return [str(part) for part in (test[1:] if test[0] == "CMD" else test)]


def built_services(document: dict[str, Any], profiles: tuple[str, ...] = ()) -> dict[str, Service]:
    """The services compose starts with ``profiles`` active that are built from the repository."""
    services = {}
    for name, raw in (document.get("services") or {}).items():
        own = tuple(raw.get("profiles") or ())
        if own and not set(own) & set(profiles):
            continue
        build = raw.get("build")
        context = build if isinstance(build, str) else (build or {}).get("context")
        if context is None or Path(ROOT, str(context)).resolve() != ROOT:
            continue
        services[name] = Service(
            name=name, command=_command(raw.get("command")), environment=_environment(raw.get("environment")),
            secrets=_secrets(raw), mounts=_mounts(raw, document), depends_on=_depends_on(raw.get("depends_on")),
            replicas=int(((raw.get("deploy") or {}).get("replicas")) or 1),
            restart=str(raw.get("restart", "no")), healthcheck=_healthcheck(raw.get("healthcheck")), profiles=own)
    return services


def default_profile_hosts(document: dict[str, Any]) -> set[str]:
    """Every service (and alias) name a process of the default profile can reach."""
    hosts = set()
    for name, raw in (document.get("services") or {}).items():
        if raw.get("profiles"):
            continue
        hosts.add(name)
        if raw.get("hostname"):
            hosts.add(str(raw["hostname"]))
    return hosts


# --- what stands in for the container world ------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A server of the test standing in for a compose service's port: where it is, the account that stands in
    for each compose user name (name, password), the database or vhost."""

    host: str
    port: int
    users: dict[str, tuple[str, str]] = field(default_factory=dict)
    path: str | None = None


DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "amqp": 5672, "amqps": 5671, "http": 80, "https": 443}


@dataclass
class HostMap:
    """Compose host names → 127.0.0.1: a service port the test stands in for (its server, user, database or
    vhost), or a service the test runs itself (127.0.0.1; each replica's port is handled apart)."""

    stand_ins: dict[tuple[str, int], Endpoint]  # (compose host, container port) → the test's server
    local: set[str]

    def url(self, value: str) -> str:
        """``value`` with a compose host name mapped; values that are not URLs of such hosts are unchanged."""
        if "://" not in value:
            return value
        parts = urlsplit(value)
        host = parts.hostname
        scheme = parts.scheme.split("+")[0]
        port = parts.port or DEFAULT_PORTS.get(scheme)
        stand_in = self.stand_ins.get((host or "", port or 0))
        if stand_in is not None:
            netloc = f"{stand_in.host}:{stand_in.port}"
            if parts.username:
                compose_user = unquote(parts.username)
                if compose_user not in stand_in.users:
                    raise ComposeError(f"{value}: no account of the test stands in for user {compose_user!r}")
                user, password = stand_in.users[compose_user]
                secret = f":{quote(password, safe='')}" if parts.password else ""
                netloc = f"{quote(user, safe='')}{secret}@{netloc}"
            path = f"/{quote(stand_in.path, safe='')}" if stand_in.path and parts.path not in ("", "/") else parts.path
            return urlunsplit(parts._replace(netloc=netloc, path=path))
        if host in self.local or any(host == known for known, _ in self.stand_ins):
            head, at, hostport = parts.netloc.rpartition("@")
            return urlunsplit(parts._replace(netloc=head + at + hostport.replace(host or "", "127.0.0.1", 1)))
        return value


@dataclass
class Replica:
    """One process of one service: what it runs with, and the running process."""

    service: Service
    index: int
    args: list[str]
    env: dict[str, str]
    cwd: Path
    log_dir: Path
    port: int | None
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    logs: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.service.name}-{self.index}"

    def start(self) -> None:
        self.starts += 1
        log = self.log_dir / f"{self.name}.{self.starts}.log"
        self.logs.append(log)
        with open(log, "wb") as handle:
            self.process = subprocess.Popen(self.args, env=self.env, cwd=self.cwd, stdout=handle,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def output(self) -> str:
        return "".join(log.read_text(encoding="utf-8", errors="replace") for log in self.logs if log.exists())

    def kill(self) -> int:
        """SIGKILL, as an OOM killer or a crashed host would."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        return self.process.wait(timeout=30)

    def restart_after_kill(self) -> None:
        """What the engine does for a container that died, if its restart policy says so."""
        if self.service.restart not in ("always", "unless-stopped") and not self.service.restart.startswith(
                "on-failure"):
            raise ComposeError(f"service {self.service.name} has restart: {self.service.restart!r}: compose would "
                               "leave a killed replica down")
        self.start()

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> int | None:
        if self.process is not None and self.process.poll() is None:
            with suppress(ProcessLookupError):
                self.process.send_signal(sig)
        return self.wait_stopped(timeout_s)

    def wait_stopped(self, timeout_s: float = 60) -> int | None:
        """The exit code once the process ends; SIGKILL after ``timeout_s`` (the engine's stop grace), then None."""
        if self.process is None:
            return None
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            return None  # ignored the signal
        return self.process.returncode

    def healthy(self) -> bool:
        if self.service.healthcheck is None:
            return self.running()
        args = [self._mapped_arg(arg) for arg in self.service.healthcheck]
        if args[0] == "hub":
            args = [*hub_executable(), *args[1:]]
        elif args[0] in ("python", "python3"):
            args = [sys.executable, *args[1:]]
        try:
            done = subprocess.run(args, env=self.env, cwd=self.cwd, capture_output=True, timeout=60,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    def _mapped_arg(self, arg: str) -> str:
        container_port = _option(self.service.command, "--port")
        if self.port is not None and container_port is not None:
            for host in ("127.0.0.1", "localhost", "0.0.0.0"):
                arg = arg.replace(f"{host}:{container_port}", f"127.0.0.1:{self.port}")
        return arg


def _option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


@dataclass
class Deployment:
    """The default profile's processes, started in compose's order; stopped (SIGTERM) at the end."""

    document: dict[str, Any]
    services: dict[str, Service]
    replicas: dict[str, list[Replica]]
    secret_values: dict[str, str]  # secret name → value written to its file
    paths: dict[str, Path]  # container path → local path (of the mounts and secrets)

    def all(self) -> list[Replica]:
        return [replica for group in self.replicas.values() for replica in group]

    def start(self, *, timeout_s: float = 240, on_wave: Callable[[list[str]], None] | None = None) -> list[list[str]]:
        """Start every service once its ``depends_on`` conditions hold, all replicas of the services whose
        conditions hold together at the same moment; return the waves. Fails when a job exits non-zero or a
        long-running process exits."""
        started: set[str] = set()
        waves: list[list[str]] = []
        deadline = time.monotonic() + timeout_s
        while len(started) < len(self.services):
            ready = [name for name in self.services if name not in started
                     and all(self._holds(dep, condition) for dep, condition in
                             self.services[name].depends_on.items())]
            if ready:
                batch = [replica for name in ready for replica in self.replicas[name]]
                for replica in batch:  # one tight loop: the replicas start within milliseconds of each other
                    replica.start()
                started.update(ready)
                waves.append(sorted(ready))
                if on_wave is not None:
                    on_wave(sorted(ready))
                continue
            self.check_alive()
            if time.monotonic() > deadline:
                waiting = {n: self.services[n].depends_on for n in self.services if n not in started}
                raise ComposeError(f"dependencies not met within {timeout_s} s: {waiting}\n{self.tails()}")
            time.sleep(0.2)
        return waves

    def _holds(self, dependency: str, condition: str) -> bool:
        if dependency not in self.services:
            if dependency not in (self.document.get("services") or {}):
                raise ComposeError(f"depends on an unknown service {dependency!r}")
            return True  # an image the test's own server stands in for: up before anything started
        group = self.replicas[dependency]
        if not all(r.process is not None for r in group):
            return False
        if condition == "service_completed_successfully":
            codes = [r.exit_code() for r in group]
            if any(code not in (None, 0) for code in codes):
                raise ComposeError(f"{dependency} exited {codes}: its dependants never start\n{self.tails()}")
            return all(code == 0 for code in codes)
        if condition == "service_healthy":
            return all(r.healthy() for r in group)
        return True

    def check_alive(self) -> None:
        """Fail when a job failed or a long-running process exited."""
        for replica in self.all():
            code = replica.exit_code()
            if code is None:
                continue
            if replica.service.kind == LONG_RUNNING or code != 0:
                raise ComposeError(f"{replica.name} exited {code}:\n{replica.output()[-4000:]}")

    def wait_until(self, condition: Callable[[], bool], what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            self.check_alive()
            if time.monotonic() > deadline:
                raise ComposeError(f"not within {timeout_s} s: {what}\n{self.tails()}")
            time.sleep(0.2)

    def stop_all(self, sig: int = signal.SIGTERM) -> dict[str, int | None]:
        """Stop every running process with ``sig`` (as `docker compose down` does), all at once; their exit
        codes (None: ignored the signal until killed). One signal each, as the engine sends: a second SIGTERM
        can land while Python finalizes, when it has put back the default handlers, and kill a process that
        was already stopping cleanly."""
        running = [r for r in self.all() if r.running()]
        for replica in running:
            with suppress(ProcessLookupError):
                assert replica.process is not None
                replica.process.send_signal(sig)
        return {replica.name: replica.wait_stopped() for replica in running}

    def kill_all(self) -> None:
        for replica in self.all():
            if replica.running():
                with suppress(ProcessLookupError):
                    replica.kill()

    def tails(self, chars: int = 1500) -> str:
        return "\n".join(f"--- {r.name} (exit {r.exit_code()})\n{r.output()[-chars:]}" for r in self.all())

    def logs(self) -> Iterator[tuple[str, str]]:
        for replica in self.all():
            yield replica.name, replica.output()


def plan(document: dict[str, Any], services: dict[str, Service], *, hosts: HostMap, work: Path,
         secret_value: Callable[[str, str, dict[str, str]], str], files: Mapping[str, Path]) -> Deployment:
    """Environments, arguments and paths of every replica: nothing started yet.

    ``secret_value(name, target, env)`` gives the value of a secret (``target``: where the service finds it,
    ``env``: the environment of that service, to find which setting reads it); ``files`` replaces container paths
    the test provides itself (the bootstrap file) before the file's own mounts are looked at."""
    image_env = dockerfile_env(ROOT / "Dockerfile")
    secrets_dir = work / "secrets"
    secrets_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(secrets_dir, 0o700)
    volumes = work / "volumes"
    shared: dict[str, Path] = {}  # every container path some service mounts → its local path
    secret_values: dict[str, str] = {}
    own_paths: dict[str, dict[str, Path]] = {}  # service → what its containers see at which path
    for service in services.values():
        seen: dict[str, Path] = {target: path for target, path in files.items()}
        for target, name in service.secrets.items():
            if name not in secret_values:
                secret_values[name] = secret_value(name, target, service.environment)
                path = secrets_dir / name
                path.write_text(secret_values[name] + "\n", encoding="utf-8")
                os.chmod(path, 0o600)
            seen[target] = secrets_dir / name
        for target, (kind, source) in service.mounts.items():
            if target in seen:
                continue
            if kind == "volume":
                local = volumes / source  # one directory per named volume, shared by every service mounting it
                local.mkdir(parents=True, exist_ok=True)
            elif kind == "bind":
                local = (ROOT / source).resolve()
            else:
                raise ComposeError(f"{service.name}: cannot provide {kind} {source} at {target}")
            seen[target] = local
        own_paths[service.name] = seen
        shared.update(seen)
    replicas: dict[str, list[Replica]] = {}
    for service in services.values():
        group = []
        for index in range(1, service.replicas + 1):
            cwd = work / "run" / f"{service.name}-{index}"
            cwd.mkdir(parents=True, exist_ok=True)
            # What a container sees at a path nothing is mounted on is its own: a directory of the replica's own.
            paths = {**own_paths[service.name]}
            env = {**image_env, **service.environment}
            port = free_port() if _option(service.command, "--port") else None
            args = _replica_args([_map_value(arg, hosts, paths, cwd) for arg in service.command], port)
            env = {key: _map_value(value, hosts, paths, cwd) for key, value in env.items()}
            for key, value in list(env.items()):
                if key.endswith("_DIR") and value.startswith(str(cwd)):
                    Path(value).mkdir(parents=True, exist_ok=True)  # as the image creates it
                if key.startswith("HUB_") and key.endswith("_PORT") and value.isdigit() and value != "0":
                    env[key] = str(free_port())  # one host: each replica needs a port of its own
                if value == "0.0.0.0":
                    env[key] = "127.0.0.1"
            if service.command[:2] == ["hub", "worker"] and "HUB_WORKER_HEARTBEAT_FILE" not in env:
                # Named after the container's host name by default; here one host name is shared by every
                # process, so each replica gets the file its own container would have.
                data_dir = Path(env.get("HUB_DATA_DIR", cwd / "var"))
                env["HUB_WORKER_HEARTBEAT_FILE"] = str(data_dir / "heartbeats" / f"worker-{service.name}-{index}.json")
            base = {key: value for key, value in os.environ.items() if key in ("PATH", "LANG", "LC_ALL", "TZ")}
            base["HOME"] = str(cwd)
            group.append(Replica(service, index, args, {**base, **env}, cwd, work, port))
        replicas[service.name] = group
    return Deployment(document, services, replicas, secret_values, shared)


def _replica_args(command: list[str], port: int | None) -> list[str]:
    args = list(command)
    for i, arg in enumerate(args[:-1]):
        if arg == "--port" and port is not None:
            args[i + 1] = str(port)
        if arg == "--host" and args[i + 1] == "0.0.0.0":
            args[i + 1] = "127.0.0.1"  # every host name is 127.0.0.1 here: listen on the loopback only
    if args and args[0] == "hub":
        args = [*hub_executable(), *args[1:]]
    return args


def _map_value(value: str, hosts: HostMap, paths: Mapping[str, Path], root: Path) -> str:
    value = hosts.url(value)
    for target in sorted(paths, key=len, reverse=True):
        if value == target or value.startswith(target.rstrip("/") + "/"):
            return str(paths[target]) + value[len(target):]
    if value.startswith("/") and not value.startswith("//") and " " not in value:
        private = root / "rootfs" / value.lstrip("/")  # the container's own file system
        private.parent.mkdir(parents=True, exist_ok=True)
        return str(private)
    return value


def url_host(value: str) -> str | None:
    """The host of a URL-looking value, before any mapping (None for other values)."""
    if "://" not in value:
        return None
    return urlsplit(value).hostname
