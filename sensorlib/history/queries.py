"""Named SQL queries over the archive's views, one text for every engine.

``sensorlib sql NAME`` runs them in DuckDB, ``sensorlib spark-sql NAME`` in Spark
(:mod:`sensorlib.history.spark`): the views (``readings``, ``alerts`` with ``event_day``)
are the same in both, so the same text gives the same numbers. Plain strings, nothing
imported: the command line's parser lists the names.
"""

from __future__ import annotations

__all__ = ["ALERTS_PER_RULE", "DAILY_STATS", "NAMED_QUERIES", "named_query"]

#: Daily statistics per sensor: one row per sensor and UTC day (``event_day``). The same
#: text runs in DuckDB (``sensorlib sql daily-stats``) and in Spark (``sensorlib spark-sql
#: daily-stats``, :mod:`sensorlib.history.spark`), so the two answer with the same numbers
#: (means may differ in the last bits: the engines add in different orders).
DAILY_STATS = """
select sensor_id, event_day as day, count(*) as n,
       min(temperature) as t_min, avg(temperature) as t_mean, max(temperature) as t_max,
       min(humidity) as h_min, avg(humidity) as h_mean, max(humidity) as h_max
from readings group by all order by 1, 2
"""
#: Alerts per rule and severity: how many, from how many sensors, first and last.
ALERTS_PER_RULE = """
select rule, severity, count(*) as alerts, count(distinct sensor_id) as sensors,
       min(event_time) as first_alert, max(event_time) as last_alert
from alerts group by all order by 1, 2
"""
#: The named queries ``sensorlib sql NAME`` and ``sensorlib spark-sql NAME`` run.
NAMED_QUERIES = {"daily-stats": DAILY_STATS, "alerts-per-rule": ALERTS_PER_RULE}


def named_query(text: str) -> str:
    """The SQL of a named query (:data:`NAMED_QUERIES`), or ``text`` itself."""
    return NAMED_QUERIES.get(text.strip(), text)
