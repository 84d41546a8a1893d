"""The pure detection core: per-sensor rolling windows (``windows``), the anomaly rules
(``detect``), the pipeline that feeds readings through both (``pipeline``), its columnar fast
path (``runs``), duplicate suppression (``dedup``) and bounded recent-key sets (``recent``).

No I/O here: everything is testable without Kafka."""
