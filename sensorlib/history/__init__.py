"""The event-time history: the archiver writing Iceberg tables (``archiver``), queries and
SQL over the archive with DuckDB (``query``) and the interactive SQL prompt (``sqlshell``)."""
