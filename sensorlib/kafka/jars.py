"""The Apache Kafka jars from Maven Central (the one place that pins the release), Java
checked, and Kafka's own command-line tools run from them."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from sensorlib.config import Settings
from sensorlib.errors import BrokerError

#: The pinned Apache Kafka release (the one place that names it).
KAFKA_VERSION = "4.4.0"
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.25.3"
SLF4J_VERSION = "2.0.17"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sensorlib</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_{scala}</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>{slf4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# --------------------------------------------------------------------------- jars


def _require_tool(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if not path:
        raise BrokerError(f"`{name}` was not found on PATH. {install_hint}")
    return path


def check_java() -> str:
    """Return the java executable, or raise with what to install (Kafka 4 needs 17+)."""
    hint = (
        "Install a JDK 17 or newer (Debian/Ubuntu: `apt-get install openjdk-17-jdk-headless`), "
        "or use Docker with compose.yml."
    )
    java = _require_tool("java", hint)
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if match:
        major = int(match.group(1))
        if major == 1 and match.group(2):
            major = int(match.group(2))
        if major < 17:
            raise BrokerError(f"Apache Kafka {KAFKA_VERSION} needs Java 17+, found {major}. {hint}")
    return java


def resolve_libs(settings: Settings, progress: Progress = _quiet) -> Path:
    """The folder of Kafka jars to put on the classpath, fetching them once if needed.

    ``KAFKA_HOME`` (``settings.kafka_home``) wins: its ``libs/`` is used as it is.
    Otherwise the pinned release is resolved from Maven Central with Maven into
    ``<cache>/kafka-<version>/lib``; later calls reuse it without any network.
    """
    if settings.kafka_home is not None:
        libs = settings.kafka_home / "libs"
        if not any(libs.glob("kafka_*.jar")):
            raise BrokerError(
                f"KAFKA_HOME={settings.kafka_home} has no libs/kafka_*.jar: point it at an "
                "unpacked Apache Kafka 4.x release, or unset it to use the Maven cache"
            )
        return libs
    root = settings.cache_dir / f"kafka-{KAFKA_VERSION}"
    lib = root / "lib"
    if (lib / ".complete").exists():
        return lib
    mvn = _require_tool(
        "mvn",
        "Install Apache Maven (Debian/Ubuntu: `apt-get install maven`) so sensorlib can fetch "
        f"Apache Kafka {KAFKA_VERSION} from Maven Central once, or set KAFKA_HOME to a Kafka "
        "installation.",
    )
    check_java()
    root.mkdir(parents=True, exist_ok=True)
    (root / "pom.xml").write_text(
        _POM.format(kafka=KAFKA_VERSION, scala=SCALA_VERSION, log4j=LOG4J_VERSION, slf4j=SLF4J_VERSION)
    )
    partial = root / "lib.partial"
    shutil.rmtree(partial, ignore_errors=True)
    progress(f"Fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central into {lib} (once) …")
    proc = subprocess.run(
        [mvn, "-B", "-q", "-f", str(root / "pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={partial}", "-DincludeScope=runtime"],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0 or not any(partial.glob("kafka_*.jar")):
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise BrokerError(f"Maven could not fetch Apache Kafka {KAFKA_VERSION}:\n{tail}")
    shutil.rmtree(lib, ignore_errors=True)
    partial.rename(lib)
    (lib / ".complete").write_text(KAFKA_VERSION + "\n")
    progress(f"Kafka jars ready ({sum(1 for _ in lib.glob('*.jar'))} jars).")
    return lib


#: Kafka's command-line tools log warnings only, to stderr (their output is stdout).
_TOOLS_LOG4J2 = """status = error
appender.console.type = Console
appender.console.name = STDERR
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
"""


def kafka_tool_command(settings: Settings, main_class: str, args: Sequence[str],
                       progress: Progress = _quiet) -> list[str]:
    """The command running one of Kafka's tools (``main_class``, e.g.
    ``org.apache.kafka.tools.TopicCommand``) from the jars :func:`resolve_libs` provides."""
    libs = resolve_libs(settings, progress)
    java = check_java()
    config = settings.cache_dir / "tools-log4j2.properties"
    if not config.exists() or config.read_text() != _TOOLS_LOG4J2:
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(_TOOLS_LOG4J2)
    return [java, "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={config}",
            "-cp", f"{libs}/*", main_class, *args]
