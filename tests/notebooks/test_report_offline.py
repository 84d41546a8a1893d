"""A rendered report loads nothing from the internet (issue 24 item 14): its figures,
tables and page open offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensorlib.notebook.runner import run_report
from tests.offline import off_machine_urls

from .conftest import Seeded

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_the_report_html_fetches_nothing_from_another_machine(seeded: Seeded,
                                                               tmp_path: Path) -> None:
    executed = run_report("1h ago", "now", tmp_path, settings=seeded.settings)
    page = executed.with_suffix(".html").read_text(encoding="utf-8")
    assert "Bokeh" in page  # the figures are in it, BokehJS inline
    assert off_machine_urls(page) == []
    # nbconvert's template loaded these from cdnjs (BokehJS's own code only names a CDN for
    # MathJax, which it fetches when a figure shows LaTeX: none does).
    for loader in ("require.min.js", "mathjax/2.7.7", "mermaid.esm.min.mjs", "embed-amd.js"):
        assert loader not in page, loader
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert off_machine_urls(index) == []
