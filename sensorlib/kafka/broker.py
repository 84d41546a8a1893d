"""Provisioning and running a real local Apache Kafka (KRaft) without Docker.

The broker's jars come from Maven Central through Maven, the way a Java build gets
them, into a per-user cache; after the first run no network is needed. The JVM runs the
real ``kafka.Kafka`` main class with a generated ``server.properties``. One node is the
default (broker and controller in one process); :class:`LocalKafka` also runs a small
multi-node cluster on one machine for fault tests.

>>> kafka = LocalKafka.from_settings(Settings.from_env())   # doctest: +SKIP
>>> kafka.start()                                             # doctest: +SKIP
>>> kafka.bootstrap_servers                                   # doctest: +SKIP
'localhost:9092'
"""

from __future__ import annotations

import base64
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import psutil

from sensorlib.config import Settings
from sensorlib.errors import BrokerError
from sensorlib.kafka.jars import KAFKA_VERSION, check_java, resolve_libs
from sensorlib.kafka.ports import port_holder, port_open
from sensorlib.progress import Progress, quiet

_LOG4J2 = """status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
"""

# --------------------------------------------------------------------------- nodes


def new_cluster_id() -> str:
    """A KRaft cluster id in Kafka's own form (URL-safe base64 of a random UUID)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


@dataclass(frozen=True)
class BrokerNode:
    """One Kafka process: its id, ports and folder (properties, data, log, pid)."""

    node_id: int
    port: int
    controller_port: int
    directory: Path

    @property
    def properties_file(self) -> Path:
        return self.directory / "server.properties"

    @property
    def log_file(self) -> Path:
        return self.directory / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.directory / "broker.pid"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"


class LocalKafka:
    """A local Apache Kafka of one or more combined broker+controller nodes.

    Args:
        directory: where each node keeps its properties, data, log and pid file.
        nodes: how many nodes (1 for everyday use, 3 for fault tests).
        ports / controller_ports: one per node (defaults: 9092, 9094, … and 9093, 9095, …).
        settings: where the jars come from (cache or ``KAFKA_HOME``) and the heap size.
        host: the address the brokers listen on and advertise.
    """

    def __init__(
        self,
        directory: Path,
        *,
        nodes: int = 1,
        ports: Sequence[int] | None = None,
        controller_ports: Sequence[int] | None = None,
        settings: Settings | None = None,
        host: str = "localhost",
        heap: str | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.directory = Path(directory)
        self.host = host
        self.heap = heap or self.settings.kafka_heap
        ports = list(ports or [self.settings.kafka_port + 2 * i for i in range(nodes)])
        cports = list(
            controller_ports or [self.settings.controller_port + 2 * i for i in range(nodes)]
        )
        if len(ports) != nodes or len(cports) != nodes:
            raise BrokerError("give one port and one controller port per node")
        self.nodes = [
            BrokerNode(i + 1, ports[i], cports[i], self.directory / f"node-{i + 1}")
            for i in range(nodes)
        ]
        #: Byte offset in each node's log where the run started here begins.
        self._log_start: dict[int, int] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalKafka:
        """The everyday single-node broker on the configured ports and data folder."""
        return cls(settings.data_dir / "kafka", settings=settings)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{self.host}:{n.port}" for n in self.nodes)

    # -- set-up -------------------------------------------------------------

    def _properties(self, node: BrokerNode) -> str:
        n = len(self.nodes)
        rf = min(3, n)
        min_isr = 2 if n >= 3 else 1
        voters = ",".join(f"{m.node_id}@{self.host}:{m.controller_port}" for m in self.nodes)
        lines = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{self.host}:{node.port},CONTROLLER://{self.host}:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": node.data_dir,
            "num.partitions": 3,
            "default.replication.factor": rf,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": 10,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": 10,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": 0,
            "auto.create.topics.enable": "false",
            "log.retention.hours": 168,
            "log.segment.bytes": 64 * 1024 * 1024,
            "unclean.leader.election.enable": "false",
        }
        return "".join(f"{k}={v}\n" for k, v in lines.items())

    def _java_cmd(self, libs: Path, main: str, *args: str) -> list[str]:
        java = check_java()
        return [
            java,
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.directory / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def prepare(self, progress: Progress = quiet) -> Path:
        """Fetch the jars if needed, write configs and format storage once. Returns libs."""
        libs = resolve_libs(self.settings, progress)
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "log4j2.properties").write_text(_LOG4J2)
        cluster_file = self.directory / "cluster.id"
        if not cluster_file.exists():
            cluster_file.write_text(new_cluster_id())
        cluster_id = cluster_file.read_text().strip()
        for node in self.nodes:
            node.directory.mkdir(parents=True, exist_ok=True)
            node.properties_file.write_text(self._properties(node))
            if (node.data_dir / "meta.properties").exists():
                continue
            progress(f"Formatting KRaft storage for node {node.node_id} in {node.data_dir} …")
            proc = subprocess.run(
                self._java_cmd(libs, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                               "-c", str(node.properties_file), "--ignore-formatted"),
                capture_output=True, text=True, check=False,
            )
            if proc.returncode != 0:
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
                raise BrokerError(f"Formatting Kafka storage failed:\n{tail}")
        return libs

    # -- processes ----------------------------------------------------------

    def pid(self, node: BrokerNode) -> int | None:
        """The pid of the node's JVM if it is running (checked by its command line)."""
        try:
            pid = int(node.pid_file.read_text().strip())
            proc = psutil.Process(pid)
            cmdline = proc.cmdline()
            if proc.status() != psutil.STATUS_ZOMBIE and "kafka.Kafka" in cmdline and str(
                node.properties_file
            ) in cmdline:
                return pid
        except (OSError, ValueError, psutil.Error):
            pass
        return None

    def _exited(self, node: BrokerNode) -> bool:
        """Whether the JVM in the node's pid file has ended (gone, or a zombie).

        Unlike :meth:`pid` this does not look at the command line: a JVM that is still
        starting (or a loaded machine) can briefly show an empty or partial one, which
        made a healthy start look like an exit.
        """
        try:
            pid = int(node.pid_file.read_text().strip())
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except (OSError, ValueError, psutil.NoSuchProcess):
            return True
        except psutil.Error:
            return False

    def start_node(self, node: BrokerNode, libs: Path) -> int:
        """Start one node's JVM in its own session (it outlives this Python process)."""
        running = self.pid(node)
        if running:
            return running
        for port, what in ((node.port, "Kafka"), (node.controller_port, "Kafka controller")):
            if port_open(self.host, port):
                holder = port_holder(port)
                raise BrokerError(
                    f"port {port} ({what}) on {self.host} is already in use by "
                    f"{holder or 'another program'}: stop it, or choose other ports "
                    "(SENSORLIB_KAFKA_PORT, SENSORLIB_CONTROLLER_PORT)"
                )
        node.directory.mkdir(parents=True, exist_ok=True)
        try:  # where this run's lines begin (the log is appended to across runs)
            self._log_start[node.node_id] = node.log_file.stat().st_size
        except OSError:
            self._log_start[node.node_id] = 0
        with open(node.log_file, "ab") as log:
            proc = subprocess.Popen(
                self._java_cmd(libs, "kafka.Kafka", str(node.properties_file)),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=node.directory,
            )
        node.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def start(self, timeout: float = 120.0, progress: Progress = quiet) -> LocalKafka:
        """Start every node that is not running and wait until the cluster answers."""
        libs = self.prepare(progress)
        for node in self.nodes:
            self.start_node(node, libs)
        self.wait_ready(timeout)
        progress(f"Apache Kafka {KAFKA_VERSION} is up at {self.bootstrap_servers}")
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until every running node accepts clients and the cluster has them all."""
        from sensorlib.kafka.clients import make_admin

        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            for node in self.nodes:
                if self._exited(node):
                    time.sleep(0.5)  # let the JVM's last words reach the log
                    raise BrokerError(
                        f"Kafka node {node.node_id} exited during start-up. "
                        f"{self.log_excerpt(node)}"
                    )
            if all(port_open(self.host, n.port) for n in self.nodes):
                try:
                    admin = make_admin(Settings(bootstrap_servers=self.bootstrap_servers),
                                       "sensorlib-broker-check", request_timeout_ms=5000)
                    try:
                        brokers = admin.describe_cluster().get("brokers", [])
                    finally:
                        admin.close()
                    if len(brokers) >= len(self.nodes):
                        return
                    last_error = f"{len(brokers)} of {len(self.nodes)} brokers registered"
                except Exception as exc:  # noqa: BLE001 - any client error means "not yet"
                    last_error = str(exc)
            time.sleep(0.3)
        raise BrokerError(
            f"Kafka did not become ready within {timeout:.0f}s ({last_error}). "
            f"{self.log_excerpt(self.nodes[0])}"
        )

    def kill_node(self, node: BrokerNode, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one node's JVM (SIGKILL for fault tests) and wait for it to go."""
        pid = self.pid(node)
        if pid is None:
            return
        try:
            proc = psutil.Process(pid)
            proc.send_signal(sig)
            proc.wait(timeout=30 if sig != signal.SIGKILL else 10)
        except psutil.TimeoutExpired:
            psutil.Process(pid).kill()
            psutil.Process(pid).wait(timeout=10)
        except psutil.NoSuchProcess:
            pass
        node.pid_file.unlink(missing_ok=True)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node cleanly (SIGTERM, then SIGKILL after ``timeout``): no orphan JVM."""
        procs = []
        for node in self.nodes:
            pid = self.pid(node)
            if pid is not None:
                proc = psutil.Process(pid)
                proc.terminate()
                procs.append((node, proc))
        _, alive = psutil.wait_procs([p for _, p in procs], timeout=timeout)
        for proc in alive:
            proc.kill()
        psutil.wait_procs(alive, timeout=10)
        for node, _ in procs:
            node.pid_file.unlink(missing_ok=True)

    def status(self) -> list[dict[str, object]]:
        """One row per node: id, pid (or None), port and whether it accepts connections."""
        return [
            {
                "node": n.node_id,
                "pid": self.pid(n),
                "port": n.port,
                "listening": port_open(self.host, n.port),
                "log": str(n.log_file),
            }
            for n in self.nodes
        ]

    def running(self) -> bool:
        return all(self.pid(n) is not None for n in self.nodes)

    def log_tail(self, node: BrokerNode | None = None, lines: int = 25) -> str:
        node = node or self.nodes[0]
        try:
            text = node.log_file.read_text(errors="replace")
        except OSError:
            return "(no log yet)"
        return "\n".join(text.splitlines()[-lines:])

    def log_excerpt(self, node: BrokerNode | None = None, *, tail: int = 12) -> str:
        """What to show when a node failed: the first error of this run's log (the ERROR
        record with its exception and ``Caused by`` lines; the cause comes hundreds of lines
        before the shutdown chatter at the end), then the last ``tail`` lines."""
        node = node or self.nodes[0]
        try:
            with open(node.log_file, "rb") as log:
                log.seek(self._log_start.get(node.node_id, 0))
                lines = log.read().decode(errors="replace").splitlines()
        except OSError:
            return f"(no log yet at {node.log_file})"
        errors = first_errors(lines)
        text = ""
        if errors:
            text += f"First error in {node.log_file}:\n" + "\n".join(errors) + "\n"
        return text + f"Last lines of {node.log_file}:\n" + "\n".join(lines[-tail:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: A log4j record of level ERROR or FATAL (the layout is ``[%d] %p %m (%c)``).
_ERROR_RECORD = re.compile(r"^\[[^\]]*\] (?:ERROR|FATAL) ")
#: A line of a Java exception: ``org.x.SomeException: …``, ``Caused by: …``.
_EXCEPTION_LINE = re.compile(r"^(?:Caused by: |Exception in thread )|^[\w.$]+(?:Exception|Error)\b")


def first_errors(lines: Sequence[str], *, records: int = 2, width: int = 400) -> list[str]:
    """The first ``records`` error records of a Kafka log, each with its exception and
    ``Caused by`` lines (stack frames left out); an exception outside any ERROR record
    (a JVM that died before logging) counts as one.

    >>> first_errors(["[t] INFO ok (x)", "[t] ERROR Unable to start acceptor (y)",
    ...               "org.apache.kafka.common.KafkaException: Socket server failed to bind",
    ...               "\tat a.b(C.java:1)", "Caused by: java.net.BindException: in use",
    ...               "[t] INFO shutting down (z)"])
    ['[t] ERROR Unable to start acceptor (y)', \
'org.apache.kafka.common.KafkaException: Socket server failed to bind', \
'Caused by: java.net.BindException: in use']
    """
    out: list[str] = []
    found = 0
    inside = False
    for line in lines:
        if line.startswith("["):
            inside = bool(_ERROR_RECORD.match(line))
            if inside:
                if found == records:
                    break
                found += 1
                out.append(line[:width])
            continue
        if inside and _EXCEPTION_LINE.match(line):
            out.append(line[:width])
        elif not inside and _EXCEPTION_LINE.match(line) and found < records:
            found += 1
            inside = True
            out.append(line[:width])
    return out


def jvm_main_class(pid: int) -> str | None:
    """The main class a JVM was started with (used to prove we run ``kafka.Kafka``)."""
    try:
        cmdline = psutil.Process(pid).cmdline()
    except psutil.Error:
        return None
    for i, arg in enumerate(cmdline):
        if arg in ("-cp", "-classpath") and i + 2 < len(cmdline):
            return cmdline[i + 2]
    return None


def kafka_pids() -> list[int]:
    """Pids of every ``kafka.Kafka`` JVM on this machine (to check for orphans)."""
    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if "kafka.Kafka" in cmd:
            pids.append(proc.info["pid"])
    return pids

