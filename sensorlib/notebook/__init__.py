"""For notebooks and reports: analysis helpers (``analysis``), incidents (``incidents``), rule
tuning (``tuning``), plots and colours (``plots``, ``colours``), the report's tables
(``report``), the papermill run of the report notebook (``runner``; the notebook itself,
``04_report.ipynb``, ships here) and the live tail's read (``live``)."""
