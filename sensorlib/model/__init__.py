"""The data model: readings and alerts (``events``), why a record is refused
(``rejections``), the wire format's limits (``limits``), the event-time acceptance window
(``acceptance``), the one validator every reader shares (``gate``) and time helpers
(``times``)."""
