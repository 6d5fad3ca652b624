"""Local services the tests need: found running, or started, never skipped."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_ADMIN_URL = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"


def is_listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def ensure_postgresql(timeout_s: float = 60) -> None:
    """Start the machine's PostgreSQL cluster if it is down; fail loudly if it will not come up."""
    if is_listening(PG_HOST, PG_PORT):
        return
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if versions and shutil.which("pg_ctlcluster"):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
            check=False,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_listening(PG_HOST, PG_PORT):
            return
        time.sleep(0.5)
    raise RuntimeError(
        f"PostgreSQL is not listening on {PG_HOST}:{PG_PORT} and could not be started"
        f" (clusters: {glob.glob('/etc/postgresql/*')})"
    )


REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379


def ensure_redis(timeout_s: float = 30) -> None:
    """Start the machine's Redis if it is down; fail loudly if it will not come up."""
    if is_listening(REDIS_HOST, REDIS_PORT):
        return
    os.makedirs("/var/lib/redis", exist_ok=True)
    os.makedirs("/var/log/redis", exist_ok=True)
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            str(REDIS_PORT),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ],
        check=False,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_listening(REDIS_HOST, REDIS_PORT):
            return
        time.sleep(0.2)
    raise RuntimeError(
        f"Redis is not listening on {REDIS_HOST}:{REDIS_PORT} and could not be started"
    )


def _wait_until_listening(name: str, host: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_listening(host, port):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{name} is not listening on {host}:{port} and could not be started")


def _wait_until_closed(name: str, host: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_listening(host, port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{name} still listens on {host}:{port} after being stopped")


RABBITMQ_HOST = "127.0.0.1"
RABBITMQ_PORT = 5672
RABBITMQ_URL = f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/"


def ensure_rabbitmq(timeout_s: float = 90) -> None:
    """Start the machine's RabbitMQ if it is down; fail loudly if it will not come up."""
    if is_listening(RABBITMQ_HOST, RABBITMQ_PORT):
        return
    subprocess.run(["rabbitmq-server", "-detached"], check=False)
    _wait_until_listening("RabbitMQ", RABBITMQ_HOST, RABBITMQ_PORT, timeout_s)


NATS_HOST = "127.0.0.1"
NATS_PORT = 4222
NATS_URL = f"nats://{NATS_HOST}:{NATS_PORT}"


def ensure_nats(timeout_s: float = 30) -> None:
    """Start the machine's NATS server (with JetStream) if it is down; fail loudly if not."""
    if is_listening(NATS_HOST, NATS_PORT):
        return
    subprocess.run(
        [
            "start-stop-daemon",
            "--start",
            "--oknodo",
            "--background",
            "--exec",
            "/usr/sbin/nats-server",
            "--",
            "-a",
            NATS_HOST,
            "-p",
            str(NATS_PORT),
            "-js",
            "-sd",
            "/var/lib/nats-server",
            "-l",
            "/var/log/nats-server.log",
        ],
        check=False,
    )
    _wait_until_listening("NATS", NATS_HOST, NATS_PORT, timeout_s)


REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


# Outage tests stop and start brokers of their own, on free ports and in their own
# directories: stopping the machine's shared services would break every other test run
# using them at the same time (and wipe Redis, which keeps no data on disk here).


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateBroker:
    """A broker process of the caller's own: `start`, `stop` (by its pid) and `start` again.

    Its data directory survives `stop` and `crash`, as a broker's disk survives a
    restart; `destroy` kills it and removes the directory.
    """

    name = "broker"

    def __init__(self, directory: str, start_timeout_s: float = 30) -> None:
        self.directory = directory
        self.port = free_port()
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        raise NotImplementedError

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        assert self._process is None, f"{self.name} is already running"
        os.makedirs(self.directory, exist_ok=True)
        log = open(os.path.join(self.directory, "server.log"), "ab")  # noqa: SIM115
        with log:
            self._process = subprocess.Popen(self.argv(), stdout=log, stderr=log)
        _wait_until_listening(self.name, "127.0.0.1", self.port, self.start_timeout_s)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        process.wait(timeout=30)
        _wait_until_closed(self.name, "127.0.0.1", self.port, 10)

    def crash(self) -> None:
        """Kill the broker at once (SIGKILL), as a power cut of its process would."""
        process, self._process = self._process, None
        if process is None:
            return
        process.kill()
        process.wait(timeout=30)
        _wait_until_closed(self.name, "127.0.0.1", self.port, 10)

    def destroy(self) -> None:
        # Its data goes too: nothing is gained by a graceful stop.
        self.crash()
        shutil.rmtree(self.directory, ignore_errors=True)


class PrivateNats(PrivateBroker):
    """A NATS server with JetStream, its file store in `directory`."""

    name = "NATS"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        store = os.path.join(self.directory, "jetstream")
        return ["nats-server", "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", store]


class PrivateRedis(PrivateBroker):
    """A Redis with an append-only file in `directory`, so a restart keeps the streams."""

    name = "Redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        return [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            self.directory,
        ]


class PrivateRabbitMQ(PrivateBroker):
    """A RabbitMQ node of its own (name, ports, database in `directory`), run as the
    `rabbitmq` user like the machine's node, with which it shares the Erlang cookie."""

    name = "RabbitMQ"

    def __init__(self, directory: str, start_timeout_s: float = 90) -> None:
        super().__init__(directory, start_timeout_s)
        self.node = f"payflow_{self.port}@localhost"
        self.dist_port = free_port()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        shutil.chown(self.directory, "rabbitmq", "rabbitmq")
        config = os.path.join(self.directory, "rabbitmq.conf")
        with open(config, "w") as file:
            file.write(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        environment = {
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": config,
            "RABBITMQ_MNESIA_BASE": os.path.join(self.directory, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(self.directory, "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(self.directory, "enabled_plugins"),
            "RABBITMQ_PID_FILE": os.path.join(self.directory, "pid"),
        }
        exports = " ".join(f"{key}={value}" for key, value in environment.items())
        command = f"cd /var/lib/rabbitmq && {exports} /usr/lib/rabbitmq/bin/rabbitmq-server"
        subprocess.run(
            ["su", "rabbitmq", "-s", "/bin/sh", "-c", f"{command} -detached"], check=True
        )
        _wait_until_listening(self.name, "127.0.0.1", self.port, self.start_timeout_s)

    def stop(self) -> None:
        pid_file = os.path.join(self.directory, "pid")
        if not os.path.exists(pid_file):
            return
        # With the pid file, `rabbitmqctl stop` returns once the node's process has ended.
        subprocess.run(["rabbitmqctl", "-n", self.node, "stop", pid_file], check=False)
        if os.path.exists(pid_file):
            os.remove(pid_file)
        _wait_until_closed(self.name, "127.0.0.1", self.port, 30)

    def crash(self) -> None:
        import signal

        pid_file = os.path.join(self.directory, "pid")
        if not os.path.exists(pid_file):
            return
        with open(pid_file) as file:
            pid = int(file.read().strip())
        os.remove(pid_file)
        os.kill(pid, signal.SIGKILL)
        _wait_until_closed(self.name, "127.0.0.1", self.port, 30)
