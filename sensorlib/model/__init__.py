"""The data model: readings and alerts (``events``), the one validator every reader shares
(``gate``: what a record is, the event-time acceptance window) and time helpers (``times``)."""
