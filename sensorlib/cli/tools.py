"""``sensorlib config`` (every setting and where it came from), ``sensorlib kafka`` (Kafka's own
tools with sensorlib's connection) and ``sensorlib completion``."""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable

from sensorlib.config import Settings

Handler = Callable[[argparse.Namespace, Settings], int]
from sensorlib.cli.common import _CONFIG_PATH, _FROM_FILE, _say

# --------------------------------------------------------------------------- config


def _config_rows(settings: Settings) -> list[dict[str, str]]:
    """Every variable of :data:`sensorlib.config.VARIABLES`: its value in force (secrets as
    ``***``) and where it came from (environment, config file, default)."""
    import os

    from sensorlib.config import SECRET_VARIABLES, VARIABLES, mask_uri
    effective = settings.to_env()
    effective["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    effective["SENSORLIB_WAREHOUSE"] = str(settings.warehouse)
    effective["SENSORLIB_ALLOWED_HOSTS"] = ",".join(settings.hosts())
    # the ingestion limits and the viewers' ports are in to_env() already
    unset = {"SENSORLIB_SEED": "(random)", "KAFKA_HOME": f"(unset: jars in {settings.cache_dir})",
             "SENSORLIB_STALE_AFTER": "(3 × SENSORLIB_INTERVAL, at least 10 s)",
             "SENSORLIB_METRICS_URLS": "(each service on SENSORLIB_HOST and its port)",
             "SENSORLIB_CORS_ORIGINS": "(none: only the service's own page)",
             "SENSORLIB_LOG_FORMAT": "text", "SENSORLIB_NOTEBOOKS": "(the report notebook shipped in the package)"}
    path = _CONFIG_PATH[0]
    rows = []
    known = set(VARIABLES)
    names = list(VARIABLES) + sorted(
        n for n in {*os.environ, *_FROM_FILE}
        if n.startswith("SENSORLIB_") and n not in known and n != "SENSORLIB_CONFIG")
    for name in names:
        raw = (os.environ.get(name) or "").strip()
        if name in _FROM_FILE:
            source = f"config file {path}"
        elif raw:
            source = "environment"
        elif name == "KAFKA_BOOTSTRAP_SERVERS" and settings.external:
            source = "from ConnectionStrings__messaging"
        elif name == "KAFKA_BOOTSTRAP_SERVERS" and settings.kafka_port != 9092:
            source = "from SENSORLIB_KAFKA_PORT"
        else:
            source = "default"
        value = effective.get(name) or raw or unset.get(name, "(unset)")
        if name in SECRET_VARIABLES or "PASSWORD" in name or "TOKEN" in name:
            value = "***" if raw or effective.get(name) else "(unset)"
        elif name == "SENSORLIB_CATALOG_URI":
            value = (mask_uri(settings.catalog_uri) if settings.catalog_uri
                     else f"(unset: sqlite {settings.warehouse / 'catalog.db'})")
        row = {"name": name, "value": value, "source": source}
        if name not in known:
            row["note"] = "not a setting this version reads (a typo?)"
        rows.append(row)
    return rows


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    rows = _config_rows(settings)
    path = _CONFIG_PATH[0]
    if args.json:
        import json

        print(json.dumps({"configFile": None if path is None else str(path), "settings": rows},
                         indent=2))
        return 0
    from sensorlib.config import CONFIG_FILE

    print(f"config file: {path}" if path is not None else
          f"config file: none (./{CONFIG_FILE} or $SENSORLIB_CONFIG; the environment wins "
          "over it)")
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        note = f"  ! {row['note']}" if "note" in row else ""
        print(f"{row['name']:<{width}}  {row['value']:<32}  {row['source']}{note}")
    return 0


# --------------------------------------------------------------------------- Kafka's tools

#: ``sensorlib kafka TOOL``: Kafka's tool classes (in the kafka-tools jar).
KAFKA_TOOLS: dict[str, str] = {
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "topics": "org.apache.kafka.tools.TopicCommand",
    "configs": "org.apache.kafka.tools.ConfigCommand",
    "get-offsets": "org.apache.kafka.tools.GetOffsetShell",
}
#: The tools' options naming a client config file (Kafka 4: --command-config; the
#: console tools' older names still work).
_CONFIG_OPTIONS = ("--command-config", "--consumer.config", "--producer.config")


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    import os
    import subprocess
    import tempfile

    from sensorlib.kafka.jars import kafka_tool_command

    main_class = KAFKA_TOOLS[args.tool]
    extra = list(args.tool_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    given = any(a == "--bootstrap-server" or a.startswith("--bootstrap-server=") for a in extra)
    asks_help = any(a in ("-h", "--help") for a in extra)
    if not given and not asks_help:
        extra = ["--bootstrap-server", settings.bootstrap_servers, *extra]
    with tempfile.TemporaryDirectory(prefix="sensorlib-kafka-") as folder:
        properties = _client_properties(settings)
        if properties and not asks_help and not any(a.startswith(_CONFIG_OPTIONS) for a in extra):
            path = f"{folder}/client.properties"
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w",
                      encoding="utf-8") as handle:  # it may hold the SASL password
                handle.write(properties)
            extra = ["--command-config", path, *extra]
        argv = kafka_tool_command(settings, main_class, extra, progress=_say)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the tool's
        try:
            return subprocess.run(argv, check=False).returncode
        finally:
            signal.signal(signal.SIGINT, previous)


def _client_properties(settings: Settings) -> str:
    """Kafka client properties for the settings' SASL/TLS options ('' for PLAINTEXT)."""
    if settings.security_protocol == "PLAINTEXT" and not settings.ssl_cafile:
        return ""
    lines = [f"security.protocol={settings.security_protocol}"]
    if settings.sasl_mechanism:
        module = ("org.apache.kafka.common.security.scram.ScramLoginModule"
                  if settings.sasl_mechanism.upper().startswith("SCRAM")
                  else "org.apache.kafka.common.security.plain.PlainLoginModule")
        user = (settings.sasl_username or "").replace("\\", "\\\\").replace('"', '\\"')
        password = (settings.sasl_password or "").replace("\\", "\\\\").replace('"', '\\"')
        lines += [f"sasl.mechanism={settings.sasl_mechanism}",
                  f'sasl.jaas.config={module} required username="{user}" password="{password}";']
    if settings.ssl_cafile:
        lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={settings.ssl_cafile}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- completion


def cmd_completion(args: argparse.Namespace, settings: Settings) -> int:
    from sensorlib.cli.parser import build_parser

    script = completion_script(build_parser(settings))
    if args.shell == "zsh":
        script = ("# zsh completion for sensorlib: bash's, through zsh's bashcompinit\n"
                  "autoload -U +X compinit && compinit\n"
                  "autoload -U +X bashcompinit && bashcompinit\n" + script)
    print(script, end="")
    return 0


def completion_script(parser: argparse.ArgumentParser) -> str:
    """A bash completion script for ``parser``: commands, each command's options, the
    choices of an option or positional argument, file names for other values."""
    def options(p: argparse.ArgumentParser) -> tuple[list[str], dict[str, list[str]], list[str]]:
        words: list[str] = []
        choices: dict[str, list[str]] = {}
        positional: list[str] = []
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            if action.option_strings:
                words += action.option_strings
                if action.choices:
                    for flag in action.option_strings:
                        choices[flag] = [str(c) for c in action.choices]
            elif action.choices:
                positional += [str(c) for c in action.choices]
        return words, choices, positional

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    top, _, _ = options(parser)
    lines = ["# bash completion for sensorlib (generated by `sensorlib completion bash`)",
             "_sensorlib() {",
             '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
             '    local cmd="${COMP_WORDS[1]}"',
             '    if [ "$COMP_CWORD" -eq 1 ]; then',
             f'        COMPREPLY=( $(compgen -W "{" ".join([*sub.choices, *top])}" -- "$cur") )',
             "        return",
             "    fi",
             '    case "$cmd" in']
    for name, p in sub.choices.items():
        words, choices, positional = options(p)
        lines.append(f"        {name})")
        if choices:
            lines.append('            case "$prev" in')
            for flag, values in choices.items():
                lines.append(f'                {flag}) COMPREPLY=( $(compgen -W "{" ".join(values)}"'
                             ' -- "$cur") ); return;;')
            lines.append("            esac")
        if name == "kafka":  # after the tool, its own options: leave them to the tool
            lines.append('            [ "$COMP_CWORD" -gt 2 ] && return')
        lines.append(f'            COMPREPLY=( $(compgen -W "{" ".join([*positional, *words])}"'
                     ' -- "$cur") );;')
    lines += ["    esac", "}", "complete -o default -F _sensorlib sensorlib", ""]
    return "\n".join(lines)
