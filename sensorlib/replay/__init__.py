"""Replaying a topic into frames: periods (``periods``), the bounded fetch and decode
(``decode``), frame assembly (``frames``), the readers (``reader``) and export (``export``)."""
