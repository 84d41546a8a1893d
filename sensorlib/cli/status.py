"""``sensorlib status``: every part of the system in one answer, within a deadline."""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

from sensorlib.config import Settings

Handler = Callable[[argparse.Namespace, Settings], int]

STATUS_DEADLINE = 3.0


class _NoAnswer:
    """A check of ``sensorlib status`` still running at the deadline."""


def _all_bounded(checks: dict[str, Callable[[], object]], deadline: float) -> dict[str, object]:
    """Run ``checks`` at once in daemon threads; each one's result, its exception, or a
    :class:`_NoAnswer` when it had not finished by ``deadline`` (``time.monotonic()``).
    A hung call (a frozen broker, a service that accepts and never answers) is left behind
    in its daemon thread: it cannot keep the command from ending."""
    results: dict[str, object] = {}

    def run(name: str, check: Callable[[], object]) -> None:
        try:
            results[name] = check()
        except Exception as exc:  # noqa: BLE001 - reported as the check's answer
            results[name] = exc

    threads = [threading.Thread(target=run, args=item, daemon=True, name=f"status-{item[0]}")
               for item in checks.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return {name: results.get(name, _NoAnswer()) for name in checks}


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    import httpx

    if getattr(args, "spark", False):
        return _print_spark(settings)
    started = time.monotonic()
    deadline = started + STATUS_DEADLINE
    url = settings.service_url
    services = [("producer", url("producer") + "/health"),
                ("processor", url("processor") + "/health"),
                ("archiver", url("archiver") + "/health"),
                ("dashboard", url("dashboard") + "/live")]
    # The dashboard's page can take seconds to render under load: ask Panel's liveness.
    probes = {name: url.replace("/live", "/liveness") if name == "dashboard" else url
              for name, url in services}
    groups = [(settings.processor_group, settings.topic_readings),
              (settings.dashboard_readings_group, settings.topic_readings),
              (settings.dashboard_alerts_group, settings.topic_alerts),
              (settings.archiver_group, settings.topic_readings),
              (settings.archiver_group, settings.topic_alerts)]
    http_timeout = httpx.Timeout(STATUS_DEADLINE - 0.5)

    def reachable() -> bool:
        from sensorlib.kafka.admin import kafka_reachable

        return kafka_reachable(settings)

    def get(url: str) -> Callable[[], object]:
        return lambda: httpx.get(url, timeout=http_timeout)

    checks: dict[str, Callable[[], object]] = {"kafka": reachable}
    checks.update({name: get(probes[name]) for name, _ in services})
    checks["lags"] = lambda: _group_lags(settings, groups)
    checks.update({f"viewer {name}": get(health) for name, (_, health) in _viewers().items()})
    checks["archive"] = lambda: _archive_status(settings)
    results = _all_bounded(checks, deadline)
    doc = _status_document(settings, services, groups, results)
    if args.json:
        import json

        print(json.dumps(doc, indent=2, default=str))
    else:
        _print_status(doc)
    return 0 if doc["healthy"] else 1


def _status_document(settings: Settings, services: list[tuple[str, str]],
                     groups: list[tuple[str, str]], results: dict[str, object]
                     ) -> dict[str, object]:
    """What ``sensorlib status`` found, as one JSON-ready object (``--json`` prints it; the
    text form prints the same content)."""
    import httpx

    waited = f"no answer within {STATUS_DEADLINE:g}s"
    lags = results["lags"]
    kafka = results["kafka"]
    if kafka is True and isinstance(lags, _NoAnswer):
        state = f"NOT ANSWERING (TCP connects; {waited}: frozen or overloaded?)"
    elif kafka is True:
        state = "reachable"
    elif isinstance(kafka, _NoAnswer):
        state = f"UNREACHABLE ({waited})"
    else:
        state = "UNREACHABLE"
    healthy = state == "reachable"
    doc: dict[str, object] = {
        "kafka": {"bootstrapServers": settings.bootstrap_servers, "status": state,
                  "reachable": state == "reachable"}}
    rows = []
    for name, url in services:
        answer = results[name]
        why: list[str] = []
        if isinstance(answer, httpx.Response):
            ok = answer.status_code == 200
            status = "healthy" if ok else f"unhealthy ({answer.status_code})"
            why = [] if ok else _health_reasons(answer)
        elif isinstance(answer, httpx.ConnectError):
            status = "not running"
        elif isinstance(answer, _NoAnswer | httpx.TimeoutException):
            status = f"NOT ANSWERING ({waited})"
        else:
            status = f"not running ({type(answer).__name__})"
        healthy &= status == "healthy"
        rows.append({"name": name, "url": url, "status": status,
                     "healthy": status == "healthy", "problems": why})
    doc["services"] = rows
    viewers = []
    for name, (url, _) in _viewers().items():  # optional: never a failure
        answer = results[f"viewer {name}"]
        if isinstance(answer, httpx.Response):
            status = "running" if answer.status_code == 200 else "starting"
        elif isinstance(answer, _NoAnswer | httpx.TimeoutException):
            status = f"not answering ({waited})"
        else:
            status = "not running (sensorlib up --observe starts it)"
        viewers.append({"name": name, "url": url, "status": status})
    doc["viewers"] = viewers
    lag_rows: list[dict[str, object]] = []
    if kafka is True:
        for group, topic in groups:
            answer = lags if not isinstance(lags, dict) else lags[(group, topic)]
            row: dict[str, object] = {"group": group, "topic": topic}
            if isinstance(answer, _NoAnswer):
                row["error"] = f"Kafka gave {waited}"
            elif isinstance(answer, Exception):
                row["error"] = str(answer)
            else:
                assert isinstance(answer, dict)
                known = [int(p["lag"]) for p in answer.values() if p["lag"] is not None]
                # None: the group never committed any partition (lag unknown, not the topic)
                row["lag"] = sum(known) if known else None
                row["neverCommitted"] = [p for p, v in answer.items() if v["lag"] is None]
                row["partitions"] = {str(p): v for p, v in answer.items()}
            lag_rows.append(row)
    doc["consumerGroups"] = lag_rows
    archive = results["archive"]
    from sensorlib.history.catalogs import describe_catalog

    catalog = describe_catalog(settings)
    if isinstance(archive, dict):
        doc["archive"] = archive
    elif isinstance(archive, _NoAnswer):
        doc["archive"] = {"warehouse": str(settings.warehouse), "catalog": catalog,
                          "catalogAnswers": None,
                          "error": f"{waited} (the catalog may be locked)"}
        healthy = False
    else:
        doc["archive"] = {"warehouse": str(settings.warehouse), "catalog": catalog,
                          "catalogAnswers": False,
                          "error": f"cannot be read ({archive})"}
        healthy = False
    doc["healthy"] = healthy
    return doc


def _print_status(doc: dict) -> None:
    """The text form of ``sensorlib status``."""
    kafka = doc["kafka"]
    print(f"kafka      {kafka['bootstrapServers']}: {kafka['status']}")
    for row in doc["services"]:
        print(f"{row['name']:<10} {row['url']}: {row['status']}")
        for reason in row["problems"]:
            print(f"{'':<10} - {reason}")
    for row in doc["viewers"]:
        print(f"{row['name']:<10} {row['url']}: {row['status']}")
    if kafka["reachable"] or doc["consumerGroups"]:
        print("consumer group lag:")
    for row in doc["consumerGroups"]:
        group, topic = row["group"], row["topic"]
        if "error" in row:
            if str(row["error"]).startswith("Kafka gave"):
                print(f"  {group:<28} {topic:<20} {row['error']}")
            else:
                print(f"  {group}: {row['error']}")
            continue
        parts = " ".join(f"p{p}={'never committed' if v['lag'] is None else v['lag']}"
                         for p, v in row["partitions"].items())
        if row["lag"] is None:
            print(f"  {group:<28} {topic:<20} never committed")
        else:
            print(f"  {group:<28} {topic:<20} lag {row['lag']:>8,}  ({parts})")
    archive = doc["archive"]
    if archive.get("catalog"):
        answers = {True: "answering", False: "not answering", None: "no answer yet"}[
            archive.get("catalogAnswers")]
        if archive.get("catalogAnswers") is True and archive.get("tables") is None:
            answers = "none yet"
        print(f"catalog    {archive['catalog']}: {answers}")
    if "error" in archive:
        print(f"archive    {archive['warehouse']}: {archive['error']}")
    elif archive["tables"] is None:
        print(f"archive    {archive['warehouse']}: none yet (start `sensorlib archive`)")
    else:
        print(f"archive    {archive['warehouse']}:")
        for row in archive["tables"]:
            if not row["exists"]:
                print(f"  {row['table']:<36} not created yet")
                continue
            when = row["lastCommit"] or "never"
            print(f"  {row['table']:<36} {row['rows']:>12,} rows  {row['files']:>5} files  "
                  f"{row['bytes'] / 1e6:8.1f} MB  last commit {when}")


def _group_lags(settings: Settings, pairs: list[tuple[str, str]]
                ) -> dict[tuple[str, str], dict[int, dict[str, int | None]] | Exception]:
    """:func:`sensorlib.kafka.admin.group_lag` of each (group, topic) pair with one consumer
    and one admin client for all (ten clients at once took seconds on a busy machine)."""
    from kafka import TopicPartition
    from kafka.errors import KafkaError

    from sensorlib.kafka.clients import make_admin, make_consumer

    consumer = make_consumer(settings, client_id="sensorlib-status")
    admin = make_admin(settings, client_id="sensorlib-status")
    try:
        parts = {topic: [TopicPartition(topic, p)
                         for p in sorted(consumer.partitions_for_topic(topic) or [])]
                 for topic in sorted({t for _, t in pairs})}
        every = [tp for tps in parts.values() for tp in tps]
        ends = consumer.end_offsets(every) if every else {}
        out: dict[tuple[str, str], dict[int, dict[str, int | None]] | Exception] = {}
        for group in dict.fromkeys(g for g, _ in pairs):
            topics = [t for g, t in pairs if g == group]
            try:
                committed = admin.list_group_offsets(
                    {group: [tp for t in topics for tp in parts[t]]}).get(group, {})
            except KafkaError:
                committed = {}
            for topic in topics:
                lag: dict[int, dict[str, int | None]] = {}
                for tp in parts[topic]:
                    meta = committed.get(tp)
                    done = meta.offset if meta is not None and meta.offset >= 0 else None
                    end = ends.get(tp, 0)
                    lag[tp.partition] = {"committed": done, "end": end,
                                         "lag": None if done is None else max(0, end - done)}
                out[(group, topic)] = lag
        return out
    finally:
        consumer.close()
        admin.close()


def _viewers() -> dict[str, tuple[str, str]]:
    """The trace and metrics viewers of ``sensorlib up --observe``: name -> (url, health)."""
    from sensorlib.observe.viewers import viewer_urls

    return viewer_urls()


def _health_reasons(answer: object) -> list[str]:
    """The reasons a service's ``/health`` gives for being unhealthy (same words)."""
    try:
        body = answer.json()  # type: ignore[attr-defined]
    except ValueError:
        return []
    if not isinstance(body, dict):
        return []
    reasons = [str(p) for p in body.get("problems") or []]
    if body.get("lastError") and not any(str(body["lastError"]) in r for r in reasons):
        reasons.append(f"last error: {body['lastError']}")
    return reasons


def _archive_status(settings: Settings) -> dict[str, object]:
    """Rows and last commit of each archive table (``sensorlib status``); ``tables`` is
    None when there is no archive yet; ``catalog`` says which catalog (password masked)."""
    from sensorlib.history.query import catalog_exists, describe_catalog

    out: dict[str, object] = {"warehouse": str(settings.warehouse),
                              "catalog": describe_catalog(settings), "catalogAnswers": True,
                              "tables": None}
    if not catalog_exists(settings):
        return out
    from sensorlib.history.query import table_status

    tables = []
    for row in table_status(settings):
        last = row.get("last_snapshot")
        tables.append({"table": row["table"], "exists": bool(row["exists"]),
                       "rows": row.get("rows"), "files": row.get("files"),
                       "bytes": row.get("bytes"),
                       "lastCommit": last.strftime("%Y-%m-%d %H:%M:%S UTC") if last else None})
    out["tables"] = tables
    return out


def _print_spark(settings: Settings) -> int:
    """``sensorlib status --spark``: the command line opening the archive in Spark."""
    from sensorlib.history import spark
    from sensorlib.history.query import KINDS, load_table

    catalog = spark.jdbc_catalog(settings)
    print(f"# The archive in Apache Spark {spark.SPARK_LINE} (Iceberg {spark.ICEBERG_VERSION}, "
          f"catalog {catalog.url}, warehouse {catalog.warehouse}).")
    if catalog.password:
        print(f"# The catalog's password is not shown: export {spark.PASSWORD_VARIABLE}=… first.")
    if catalog.engine == "sqlite" or catalog.warehouse.startswith("file:"):
        print("# A sqlite catalog and a file: warehouse are reachable from this machine only "
              "(or where the same path is mounted): for a cluster, use a PostgreSQL catalog "
              "and shared or object storage.")
    print("# pyspark and spark-submit take the same options.")
    print(spark.shell_line(spark.command_line(settings)))
    print("# Then, for the views of `sensorlib sql` (save as views.sql and add -i views.sql):")
    present = {kind.name: load_table(settings, kind) is not None for kind in KINDS}
    for statement in spark.views_sql(settings, present):
        print(statement + ";")
    return 0
