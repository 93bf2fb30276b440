"""A real single-node Apache Kafka broker (KRaft) on loopback.

Why this exists: Kafka delivery guarantees (acks, retries, unknown topic,
SASL/TLS client settings) can only be believed when tested against the real
broker. It runs from the Maven Central jars that `scripts/testbin kafka` put in
$CACHE/kafka/libs, with three client listeners:

- PLAINTEXT       (no auth)                         -> bootstrap["PLAINTEXT"]
- SASL_PLAINTEXT  (SCRAM-SHA-512 and SCRAM-SHA-256)  -> bootstrap["SASL_PLAINTEXT"]
- SASL_SSL        (same SCRAM users, openssl CA)     -> bootstrap["SASL_SSL"], ca_path

The SCRAM user is created at format time (StorageTool --add-scram), so it
exists before the broker answers. auto.create.topics.enable defaults to False
so that producing to a missing topic really fails ("unknown topic"), which is
what the exporter's error handling must be tested against; pass
auto_create_topics=True to change it. stop()/start() keep the data directory.
"""
from __future__ import annotations

import base64
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .paths import kafka_libs, new_workdir
from .proc import ComponentError, ManagedProcess, free_port, port_open, run, wait_until
from .tls import CA

LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
logger.ctrl.name = org.apache.kafka.controller
logger.ctrl.level = info
logger.raft.name = org.apache.kafka.raft
logger.raft.level = warn
"""

_QUIET = logging.getLogger("kee.tests.kafka.quiet")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

JVM_OPTS = ["-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto",
            "-Djava.awt.headless=true"]


@dataclass
class Record:
    """One consumed Kafka record."""
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: int | None = None

    def header(self, name: str) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


class KafkaBroker:
    """Single-node KRaft broker+controller; see the module docstring."""

    username = "kee"
    password = "kee-secret"
    mechanism = "SCRAM-SHA-512"

    def __init__(self, workdir: Path | None = None, *, auto_create_topics: bool = False,
                 num_partitions: int = 1, extra_properties: dict | None = None):
        self.libs = kafka_libs()
        self.dir = Path(workdir) if workdir else new_workdir("kafka")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "kafka.log"
        self.ports = {name: free_port() for name in ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "CONTROLLER")}
        self.bootstrap = {name: f"127.0.0.1:{p}" for name, p in self.ports.items() if name != "CONTROLLER"}
        self.auto_create_topics = auto_create_topics
        self.ca = CA(self.dir / "tls", "kee-kafka-ca")
        self.ca_path = self.ca.cert
        self.ca.issue("broker", "localhost", server=True)
        self.keystore_password = "kee-keystore"
        self.keystore = self.ca.pkcs12("broker", self.keystore_password)
        self.cluster_id: str | None = None
        self.properties_path = self.dir / "server.properties"
        self._write_config(num_partitions, extra_properties or {})
        self.process = ManagedProcess(
            "kafka", ["java", *JVM_OPTS, f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
                      "-cp", f"{self.libs}/*", "kafka.Kafka", self.properties_path],
            self.log_path, env={"KAFKA_HEAP_OPTS": "", "LOG_DIR": str(self.dir)})

    # -- convenience ---------------------------------------------------------------
    @property
    def bootstrap_servers(self) -> str:
        """The PLAINTEXT bootstrap string."""
        return self.bootstrap["PLAINTEXT"]

    def client_config(self, listener: str = "PLAINTEXT", **extra) -> dict:
        """librdkafka (confluent_kafka) settings for a listener, with the right credentials."""
        conf = {"bootstrap.servers": self.bootstrap[listener], "security.protocol": listener}
        if listener.startswith("SASL"):
            conf.update({"sasl.mechanisms": self.mechanism, "sasl.username": self.username,
                         "sasl.password": self.password})
        if listener.endswith("SSL"):
            conf["ssl.ca.location"] = str(self.ca_path)
        conf.update(extra)
        return conf

    def _write_config(self, num_partitions: int, extra: dict) -> None:
        p = self.ports
        jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{p['CONTROLLER']}",
            "listeners": ",".join(f"{n}://127.0.0.1:{port}" for n, port in p.items()),
            "advertised.listeners": ",".join(f"{n}://127.0.0.1:{port}" for n, port in p.items() if n != "CONTROLLER"),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,"
                                              "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256",
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": jaas,
            "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": jaas,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": jaas,
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(self.keystore),
            "ssl.keystore.password": self.keystore_password,
            "ssl.key.password": self.keystore_password,
            "log.dirs": str(self.data_dir),
            "num.partitions": str(num_partitions),
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": str(self.auto_create_topics).lower(),
            "log.flush.interval.messages": "9223372036854775807",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }
        props.update({k: str(v) for k, v in extra.items()})
        self.properties_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.dir / "log4j2.properties").write_text(LOG4J2)

    def _format(self) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        # what `StorageTool random-uuid` prints (base64url of 16 random bytes), without a JVM start; like
        # Kafka's own Uuid.randomUuid, never one starting with "-" (the tool would read it as an option)
        self.cluster_id = "-"
        while self.cluster_id.startswith("-"):
            self.cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        scram = f"[name={self.username},password={self.password}]"
        run(["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1",
             f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}", "-cp", f"{self.libs}/*",
             "kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c", self.properties_path,
             "--ignore-formatted", "--add-scram", f"SCRAM-SHA-512={scram}", "--add-scram", f"SCRAM-SHA-256={scram}"])

    # -- lifecycle -----------------------------------------------------------------
    def start(self, timeout: float = 90) -> KafkaBroker:
        """Format the data dir on first start, start the broker, wait until metadata answers."""
        self._format()
        self.process.start()
        wait_until(self._ready, timeout, "Kafka metadata on the PLAINTEXT listener", interval=0.3,
                   proc=self.process)
        return self

    def stop(self) -> None:
        """Controlled shutdown (SIGTERM), keeping the data directory."""
        self.process.stop(timeout=30)

    def kill(self) -> None:
        """SIGKILL the broker (a crash); start() again recovers from the data directory."""
        self.process.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _ready(self) -> bool:
        from confluent_kafka.admin import AdminClient
        if not all(port_open(p) for p in self.ports.values()):
            return False
        md = AdminClient({"bootstrap.servers": self.bootstrap_servers, "logger": _QUIET}).list_topics(timeout=2)
        return bool(md.brokers)

    # -- topics and records --------------------------------------------------------
    def admin(self, listener: str = "PLAINTEXT"):
        from confluent_kafka.admin import AdminClient
        return AdminClient(self.client_config(listener))

    def create_topic(self, name: str, partitions: int = 1, config: dict | None = None,
                     timeout: float = 30) -> str:
        """Create a topic and wait until its leaders are known; returns the name."""
        from confluent_kafka.admin import NewTopic
        admin = self.admin()  # keep a reference: a collected client cancels its futures
        fut = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                            config=config or {})])[name]
        fut.result(timeout)

        def leaders_known():
            md = admin.list_topics(name, timeout=5).topics.get(name)
            return md is not None and md.error is None and len(md.partitions) == partitions and \
                all(p.leader >= 0 for p in md.partitions.values())
        wait_until(leaders_known, timeout, f"leaders of topic {name}")
        return name

    def delete_topic(self, name: str, timeout: float = 30) -> None:
        admin = self.admin()
        admin.delete_topics([name])[name].result(timeout)

    def produce(self, topic: str, value: bytes | str, key: bytes | str | None = None,
                headers: list | None = None, listener: str = "PLAINTEXT", timeout: float = 30, **conf) -> None:
        """Produce one record with acks=all and wait for its delivery report (raise on error)."""
        from confluent_kafka import KafkaException, Producer
        errors = []
        p = Producer(self.client_config(listener, acks="all", **conf))
        p.produce(topic, value=value, key=key, headers=headers or [],
                  on_delivery=lambda err, msg: errors.append(err))
        left = p.flush(timeout)
        if left:
            raise ComponentError(f"record to {topic} not delivered within {timeout}s")
        if errors and errors[0] is not None:
            raise KafkaException(errors[0])

    def consume(self, topic: str, n: int | None = None, timeout: float = 15, listener: str = "PLAINTEXT",
                idle: float | None = None, **conf) -> list[Record]:
        """All records of `topic` from the beginning (every partition, assigned directly, no group
        commit) until `n` records were read or `timeout` seconds passed. With n=None, stop once
        no new record arrived for `idle` seconds (default 2) - i.e. "everything in the topic"."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
        c = Consumer(self.client_config(listener, **{"group.id": f"kee-test-{uuid.uuid4().hex[:8]}",
                                                     "enable.auto.commit": False,
                                                     "auto.offset.reset": "earliest", **conf}))
        try:
            md = c.list_topics(topic, timeout=10).topics[topic]
            if md.error is not None:
                raise KafkaException(md.error)
            c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in md.partitions])
            out: list[Record] = []
            deadline = time.monotonic() + timeout
            idle = 2.0 if idle is None else idle
            last = time.monotonic()
            while time.monotonic() < deadline and (n is None or len(out) < n):
                m = c.poll(0.2)
                if m is None:
                    if n is None and time.monotonic() - last > idle:
                        break
                    continue
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(m.error())
                last = time.monotonic()
                out.append(Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                                  list(m.headers() or []), m.timestamp()[1]))
            return out
        finally:
            c.close()

    def __repr__(self) -> str:
        return f"<KafkaBroker {self.bootstrap} dir={self.dir}>"
