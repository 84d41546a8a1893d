"""The Apache Kafka jars from Maven Central (the one place that pins the release), Java
checked, and Kafka's own command-line tools run from them."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from sensorlib.config import Settings
from sensorlib.errors import BrokerError, SensorlibError
from sensorlib.progress import Progress, quiet

#: The pinned Apache Kafka release (the one place that names it).
KAFKA_VERSION = "4.4.0"
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.25.3"
SLF4J_VERSION = "2.0.17"

#: The Kafka runtime: the broker, its tools and their logging.
KAFKA_ARTIFACTS = (
    f"org.apache.kafka:kafka_{SCALA_VERSION}:{KAFKA_VERSION}",
    f"org.apache.kafka:kafka-tools:{KAFKA_VERSION}",
    f"org.slf4j:slf4j-api:{SLF4J_VERSION}",
    f"org.apache.logging.log4j:log4j-slf4j2-impl:{LOG4J_VERSION}",
    f"org.apache.logging.log4j:log4j-core:{LOG4J_VERSION}",
)

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sensorlib</groupId>
  <artifactId>{name}-runtime</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
{dependencies}
  </dependencies>
</project>
"""
_DEPENDENCY = ("    <dependency><groupId>{}</groupId><artifactId>{}</artifactId>"
               "<version>{}</version></dependency>")


# --------------------------------------------------------------------------- jars


def _require_tool(name: str, install_hint: str,
                  error: type[SensorlibError] = BrokerError) -> str:
    path = shutil.which(name)
    if not path:
        raise error(f"`{name}` was not found on PATH. {install_hint}")
    return path


def check_java(error: type[SensorlibError] = BrokerError,
               needed_by: str = f"Apache Kafka {KAFKA_VERSION}") -> str:
    """Return the java executable, or raise ``error`` with what to install (Kafka 4 and
    Spark 4 need 17+)."""
    hint = "Install a JDK 17 or newer (Debian/Ubuntu: `apt-get install openjdk-17-jdk-headless`)"
    hint += ", or use Docker with compose.yml." if error is BrokerError else "."
    java = _require_tool("java", hint, error)
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if match:
        major = int(match.group(1))
        if major == 1 and match.group(2):
            major = int(match.group(2))
        if major < 17:
            raise error(f"{needed_by} needs Java 17+, found {major}. {hint}")
    return java


def resolve_libs(settings: Settings, progress: Progress = quiet) -> Path:
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
    return maven_jars(
        settings, f"kafka-{KAFKA_VERSION}", KAFKA_ARTIFACTS, what=f"Apache Kafka {KAFKA_VERSION}",
        must_have="kafka_*.jar", progress=progress,
        mvn_hint="or set KAFKA_HOME to a Kafka installation.")


def maven_jars(settings: Settings, name: str, artifacts: Sequence[str], *, what: str,
               must_have: str = "*.jar", transitive: bool = True, progress: Progress = quiet,
               mvn_hint: str = "", error: type[SensorlibError] = BrokerError) -> Path:
    """The folder ``<cache>/<name>/lib`` holding ``artifacts`` (``group:artifact:version``)
    and, with ``transitive``, their runtime dependencies, fetched once from Maven Central.

    Maven resolves and downloads them (checksums checked: ``--strict-checksums``) into a
    partial folder that is renamed into place only when complete (a ``.complete`` marker),
    so an interrupted fetch is redone, never half used; later calls use no network.
    ``must_have`` is a glob that must match in the result. Raises ``error`` when Maven or
    Java is missing or the fetch fails.
    """
    root = settings.cache_dir / name
    lib = root / "lib"
    if (lib / ".complete").exists():
        return lib
    mvn = _require_tool(
        "mvn", "Install Apache Maven (Debian/Ubuntu: `apt-get install maven`) so sensorlib can "
        f"fetch {what} from Maven Central once{', ' + mvn_hint if mvn_hint else '.'}", error)
    check_java(error, what)
    root.mkdir(parents=True, exist_ok=True)
    version = name.rpartition("-")[2] if "-" in name else "0"
    dependencies = "\n".join(_DEPENDENCY.format(*coordinate.split(":", 2))
                             for coordinate in artifacts)
    (root / "pom.xml").write_text(_POM.format(name=name, version=version,
                                              dependencies=dependencies))
    partial = root / "lib.partial"
    shutil.rmtree(partial, ignore_errors=True)
    progress(f"Fetching {what} jars from Maven Central into {lib} (once) …")
    proc = subprocess.run(
        [mvn, "-B", "-q", "--strict-checksums", "-f", str(root / "pom.xml"),
         "dependency:copy-dependencies", f"-DoutputDirectory={partial}",
         "-DincludeScope=runtime", f"-DexcludeTransitive={str(not transitive).lower()}"],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0 or not any(partial.glob(must_have)):
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise error(f"Maven could not fetch {what}:\n{tail}")
    shutil.rmtree(lib, ignore_errors=True)
    partial.rename(lib)
    (lib / ".complete").write_text("\n".join(artifacts) + "\n")
    progress(f"{what} jars ready ({sum(1 for _ in lib.glob('*.jar'))} jars).")
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
                       progress: Progress = quiet) -> list[str]:
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
