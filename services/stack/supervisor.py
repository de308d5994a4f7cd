"""Starts and stops the embedded stack: the mock Kafka broker, the SecantusDB daemon and
the four services, each as its own process. Used by `make run` and by the e2e tests.

Children run in their own sessions (Ctrl-C reaches only the supervisor, which stops them
in order: services first, so they flush, then the database, then the broker) and are
told to die with the supervisor (PR_SET_PDEATHSIG), so nothing is orphaned even if the
supervisor itself is killed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.topics import ALL_TOPICS

SERVICES = ("intake", "routing", "sla", "notify")
_STACK_SETTINGS = (
    "LAPOR_KAFKA_BOOTSTRAP_SERVERS",
    "LAPOR_MONGODB_URI",
    "LAPOR_GRPC_PORT",
    "LAPOR_METRICS_PORT",
    "LAPOR_OUTBOX_REPLAY",
)


def _guarded(args: list[str]) -> list[str]:
    """`args` run so that they die with this process (services/stack/orphan_guard.py)."""
    return [sys.executable, "-m", "services.stack.orphan_guard", str(os.getpid()), *args]


_PICKED: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (Linux's default if
    it cannot be read)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free port for a process of the stack to listen on, picked **below** the ephemeral
    range: a port the kernel hands out for binding to 0 comes from that range, which every
    outgoing connection (to the broker, the databases) also takes its local port from, so
    one of them could take it before the process binds it ("Address already in use"). Each
    port is handed out once per process, and checked free when handed out."""
    low, _high = _ephemeral_range()
    candidates = range(max(1024, low - 12000), low) if low > 2048 else range(0)
    for _ in range(500):
        if not candidates:
            break
        port = random.choice(candidates)  # noqa: S311 - not a secret
        if port in _PICKED:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PICKED.add(port)
        return port
    with socket.socket() as s:  # no room below the ephemeral range: the kernel's choice
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def health_status(address: str, service: str = "", timeout: float = 1.0) -> str:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as exc:
            return f"UNREACHABLE ({exc.code().name})"  # type: ignore[attr-defined]
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path | None
    ports: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"


class Stack:
    def __init__(
        self, workdir: Path, *, persistent_db: Path | None = None, partitions: int = 4
    ) -> None:
        self.workdir = workdir
        self.logdir = workdir / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.persistent_db = persistent_db
        self.partitions = partitions
        self.kafka: Proc | None = None
        self.mongo: Proc | None = None
        self.services: dict[str, Proc] = {}
        self.bootstrap_servers = ""
        self.mongodb_uri = ""
        self.service_mongodb_uris: dict[str, str] = {}
        self.service_mongos: list[Proc] = []
        self._files: list[IO[bytes]] = []
        self._replayed: set[str] = set()

    # -- infrastructure ------------------------------------------------------------
    def start_kafka(self, brokers: int = 1) -> str:
        args = [
            sys.executable,
            "-m",
            "services.stack.kafka_mock",
            "--brokers",
            str(brokers),
            "--partitions",
            str(self.partitions),
        ]
        for topic in ALL_TOPICS:
            args += ["--topic", topic]
        popen = subprocess.Popen(
            _guarded(args),
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
            stderr=self._log("kafka"),
            start_new_session=True,
        )
        assert popen.stdout is not None
        line = popen.stdout.readline()
        if not line:
            raise RuntimeError(
                f"mock Kafka broker failed to start; see {self.logdir / 'kafka.log'}"
            )
        self.bootstrap_servers = json.loads(line)["bootstrap_servers"]
        port = int(self.bootstrap_servers.split(",")[0].rsplit(":", 1)[1])
        self.kafka = Proc("kafka", popen, self.logdir / "kafka.log", {"kafka": port})
        return self.bootstrap_servers

    def kafka_control(self, command: str) -> None:
        """Fault injection: 'down 1' / 'up 1' takes broker 1 down or up."""
        assert self.kafka and self.kafka.popen.stdin and self.kafka.popen.stdout
        self.kafka.popen.stdin.write((command + "\n").encode())
        self.kafka.popen.stdin.flush()
        self.kafka.popen.stdout.readline()

    def start_mongo(self, port: int | None = None) -> str:
        storage = str(self.persistent_db) if self.persistent_db else ":memory:"
        if self.persistent_db:
            self.persistent_db.mkdir(parents=True, exist_ok=True)
        self.mongo, self.mongodb_uri = self._start_secantus("mongodb", port or free_port(), storage)
        return self.mongodb_uri

    def start_service_databases(self) -> dict[str, str]:
        """One more database process per service (as production may give each service its
        own cluster); services started afterwards use theirs. For benchmarks: spreads the
        embedded database's single-process load over the machine's cores."""
        for name in SERVICES:
            proc, uri = self._start_secantus(f"mongodb-{name}", free_port(), ":memory:")
            self.service_mongos.append(proc)
            self.service_mongodb_uris[name] = uri
        return dict(self.service_mongodb_uris)

    def _start_secantus(self, name: str, port: int, storage: str) -> tuple[Proc, str]:
        exe = Path(sys.executable).with_name("secantusd-py")
        popen = subprocess.Popen(
            _guarded(
                [
                    str(exe),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--storage-path",
                    storage,
                    "--log-level",
                    "WARNING",
                    "--standalone",
                ]
            ),
            stdout=self._log(name),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.workdir,
        )
        wait_for_port(port, 60, popen)
        proc = Proc(name, popen, self.logdir / f"{name}.log", {"mongodb": port})
        # --standalone: no replica-set advertisement, so SecantusDB keeps no oplog (one BSON
        # encode, an update diff and an oplog-table write less per modified document: 6-10%
        # of each embedded database's CPU in bench-routing). Nothing here reads the oplog (no
        # change streams); multi-document transactions work the same. Production runs a
        # replica set.
        # retryWrites=false: SecantusDB scans its list of retryable-write records on every
        # write and, past 10,000 of them (30 minutes' worth), sorts it (2.3 ms each time,
        # twice per write); a real mongod keeps them per session. Nothing here needs the
        # driver's one automatic retry: every write path is idempotent and a failed write
        # surfaces (UNAVAILABLE to the channel, redelivery to a consumer). Production URIs
        # keep the driver's default (on). Measured in README "Benchmarks".
        return proc, f"mongodb://127.0.0.1:{port}/?directConnection=true&retryWrites=false"

    # -- services --------------------------------------------------------------------
    def service_env(
        self, name: str, grpc_port: int, metrics_port: int, extra: dict[str, str]
    ) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAPOR_")}
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "LAPOR_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
                # The mock broker holds a fetch on a quiet partition for the whole wait
                # (Kafka answers when data arrives): a short wait keeps each hop quick, at
                # the price of idle consumers polling 50 times a second (about a third of
                # one core for the whole idle stack; 100 ms: 13%, but 40 ms more per hop).
                "LAPOR_KAFKA_FETCH_MAX_WAIT_MS": "20",
                "LAPOR_MONGODB_URI": self.service_mongodb_uris.get(name, self.mongodb_uri),
                "LAPOR_GRPC_PORT": str(grpc_port),
                "LAPOR_METRICS_PORT": str(metrics_port),
                # The embedded broker keeps nothing across its restarts: a service's
                # first start on a broker republishes what its outbox published before.
                "LAPOR_OUTBOX_REPLAY": "0" if name in self._replayed else "1",
                # A lease holder's name that a restart keeps (its ports are kept too): a
                # service restarted after a crash takes its leases back at once.
                "LAPOR_INSTANCE_ID": f"{name}@{grpc_port}",
            }
        )
        self._replayed.add(name)
        env.update(extra)
        return env

    def start_service(
        self,
        name: str,
        extra_env: dict[str, str] | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
    ) -> Proc:
        previous = self.services.get(name)
        grpc_port = grpc_port or (previous.ports["grpc"] if previous else free_port())
        metrics_port = metrics_port or (previous.ports["metrics"] if previous else free_port())
        env = self.service_env(
            name,
            grpc_port,
            metrics_port,
            extra_env if extra_env is not None else (previous.env if previous else {}),
        )
        popen = subprocess.Popen(
            _guarded([sys.executable, "-m", f"services.{name}"]),
            env=env,
            stdout=self._log(name),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        proc = Proc(
            name,
            popen,
            self.logdir / f"{name}.log",
            {"grpc": grpc_port, "metrics": metrics_port},
            {
                k: v
                for k, v in env.items()
                if k.startswith("LAPOR_")
                and k
                not in (
                    "LAPOR_KAFKA_BOOTSTRAP_SERVERS",
                    "LAPOR_MONGODB_URI",
                    "LAPOR_GRPC_PORT",
                    "LAPOR_METRICS_PORT",
                    "LAPOR_INSTANCE_ID",
                )
            },
        )
        self.services[name] = proc
        return proc

    def wait_serving(self, names: tuple[str, ...] = SERVICES, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        pending = list(names)
        while pending:
            name = pending[0]
            proc = self.services[name]
            if proc.popen.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.popen.returncode}; see {proc.log_path}"
                )
            if health_status(proc.grpc_address) == "SERVING":
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not SERVING after {timeout}s; see {proc.log_path}")
            time.sleep(0.2)

    def stop_service(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        proc = self.services[name]
        return self._stop(proc, sig, timeout)

    def stop(self) -> None:
        for proc in self.services.values():
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        for proc in self.services.values():
            self._stop(proc, signal.SIGTERM, 15)
        for infra in (*self.service_mongos, self.mongo, self.kafka):
            if infra is not None:
                self._stop(infra, signal.SIGTERM, 30)
        for f in self._files:
            f.close()
        self._files.clear()

    def _stop(self, proc: Proc, sig: int, timeout: float) -> int:
        if proc.popen.poll() is None:
            proc.popen.send_signal(sig)
            try:
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        return proc.popen.returncode

    def _log(self, name: str) -> IO[bytes]:
        f = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._files.append(f)
        return f

    def read_log(self, name: str) -> str:
        return (self.logdir / f"{name}.log").read_text(errors="replace")
