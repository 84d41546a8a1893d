"""For notebooks and reports: analysis helpers (``analysis``), incidents (``incidents``), rule
tuning (``tuning``), plots and colours (``plots``, ``colours``) and the papermill report
(``report``)."""
