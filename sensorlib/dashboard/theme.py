"""The dashboard's look: dark-theme stylesheets, each pane carrying only the rules it needs.

Nothing is loaded from the internet: Panel's Fast design links Open Sans from Google
Fonts on every page, so :func:`no_web_fonts` drops that link (the system font stack of
:data:`BASE_CSS` is used) when this module is imported; every script and stylesheet
else is served by the dashboard itself (``tests/dashboard/test_offline.py``).
"""

from __future__ import annotations

from typing import Any

import panel as pn

from sensorlib.notebook.colours import STATUS_COLOURS as COLOURS

__all__ = ["CARD_CSS", "CARD_TEXT_CSS", "CSS", "OPS_CSS", "SPARK_CSS", "TABS_CSS", "WIDGET_CSS",
           "html_pane", "no_web_fonts"]

def no_web_fonts() -> None:
    """Make Panel's Fast design link no web font (it adds Google Fonts' Open Sans to every
    page it styles, which an offline browser waits for). Idempotent."""
    from panel.theme.fast import Fast  # the design of pn.extension(design="fast")

    if Fast._resources.get("font"):
        Fast._resources = {k: v for k, v in Fast._resources.items() if k != "font"}


no_web_fonts()

#: Each pane carries only the rules it needs: a stylesheet string is sent once per pane,
#: so one sheet for everything was most of the page (55 copies of 5 kB).
BASE_CSS = """
:host { --muted: #9aa4b2; --faint: #7d8590; color: #e6e6e6;
        font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; }
"""

CARD_TEXT_CSS = BASE_CSS + """
.sensor-card { padding: 2px 2px 0 2px; }
.card-head { display: flex; justify-content: space-between; align-items: center; gap: 8px; }
.sensor-id { font-weight: 650; font-size: 1.05em; overflow-wrap: anywhere; }
.badge { font-size: .68em; padding: 2px 9px; border-radius: 10px; font-weight: 700;
         letter-spacing: .06em; white-space: nowrap; }
.badge-normal { background: #163d24; color: #8ff0b0; }
.badge-warning { background: #5c4300; color: #ffd180; }
.badge-critical { background: @critical@; color: #fff; animation: pulse 1.2s ease-in-out infinite; }
.badge-stale { background: #30363d; color: #c9d1d9; }
@keyframes pulse { 50% { opacity: .55; } }
.location { color: var(--muted); font-size: .85em; margin-top: 2px; overflow-wrap: anywhere; }
.values { display: flex; gap: 16px; margin-top: 6px; font-size: 1.9em; font-weight: 600;
          font-variant-numeric: tabular-nums; }
.values small { font-size: .45em; color: var(--muted); font-weight: 500; }
.temperature { color: #ffcf9e; } .humidity { color: #a9ceff; }
.status-warning .value { color: #ffc46b; }
.status-critical .value { color: #ff6b6b; }
.status-stale .value { color: @stale@; }
.status-stale .updated { color: #c9d1d9; }
.updated { color: var(--faint); font-size: .75em; margin-top: 2px; }
.limits { color: var(--muted); font-size: .75em; margin-top: 1px; }
"""

SPARK_CSS = BASE_CSS + """
.sparks { display: flex; gap: 8px; margin-top: 4px; }
.spark { margin: 0; }
.spark figcaption { color: #9aa4b2; font-size: 9px; line-height: 12px; }
.spark svg { display: block; overflow: visible; }
.sparks.muted svg { opacity: .5; }
"""

CSS = BASE_CSS + """
.board-summary { color: var(--muted); font-size: .9em; margin: 0 4px 4px 4px; line-height: 1.5; }
.board-summary .fleet { color: #e6e6e6; font-weight: 600; }
.count { font-weight: 600; font-variant-numeric: tabular-nums; }
.count-critical { color: #ff6b6b; } .count-warning { color: #ffc46b; }
.count-stale { color: #b1bac4; } .count-normal { color: #8ff0b0; }
.board-summary .more { color: #e6e6e6; font-weight: 600; }
.page-label { color: var(--muted); padding-top: 12px; text-align: center; font-size: .9em;
              white-space: nowrap; }
.stats { display: flex; flex-wrap: wrap; gap: 10px; }
.stat { background: #1b1f27; border: 1px solid #2d333b; border-radius: 8px; padding: 6px 14px;
        min-width: 110px; }
.stat-value { font-size: 1.45em; font-weight: 650; font-variant-numeric: tabular-nums; }
.stat-label { color: var(--muted); font-size: .78em; }
.stat-alerts-critical .stat-value { color: #ff6b6b; }
.stat-alerts-warning .stat-value { color: #ffc46b; }
.kafka-banner { background: #5a1217; border: 1px solid @critical@; color: #ffd7d7; padding: 10px 14px;
                border-radius: 8px; font-weight: 600; }
.kafka-detail { font-weight: 400; font-size: .85em; color: #ffb3b3; margin-top: 2px; }
.alert-feed { display: flex; flex-direction: column; gap: 6px; }
.alert-row { display: grid; grid-template-columns: 74px 1fr auto; gap: 10px; align-items: start;
             background: #1b1f27; border-left: 4px solid @warning@; border-radius: 6px;
             padding: 7px 9px; }
.alert-row.sev-critical { border-left-color: @critical@; background: #261519; }
.sev { font-size: .68em; font-weight: 700; padding: 3px 0; border-radius: 4px; text-align: center;
       letter-spacing: .05em; }
.sev-badge-critical { background: @critical@; color: #fff; }
.sev-badge-warning { background: @warning@; color: #1b1f27; }
.sev-badge-normal { background: @normal@; color: #1b1f27; }
.alert-main { display: flex; flex-direction: column; min-width: 0; }
.alert-sensor { font-weight: 650; overflow-wrap: anywhere; }
.alert-location { color: var(--muted); font-size: .82em; overflow-wrap: anywhere; }
.alert-reason { font-size: .88em; margin-top: 2px; overflow-wrap: anywhere; }
.alert-when { color: var(--faint); font-size: .78em; white-space: nowrap; display: flex;
              flex-direction: column; align-items: flex-end; gap: 3px; }
.alert-trace { color: #79c0ff; text-decoration: none; font-size: .95em; }
.alert-trace:hover { text-decoration: underline; }
.alert-row.silenced { opacity: .62; border-left-style: dashed; }
.alert-silenced { color: #d2a8ff; font-weight: 650; border: 1px solid #d2a8ff; border-radius: 4px;
                  padding: 0 5px; text-transform: uppercase; letter-spacing: .05em; font-size: .9em; }
.alert-silence { color: #79c0ff; text-decoration: none; font-size: .95em; cursor: help; }
a.alert-silence { cursor: pointer; }
a.alert-silence:hover { text-decoration: underline; }
.no-alerts, .waiting { color: var(--muted); padding: 12px 4px; }
h3 { margin: 4px 0 8px 0; font-weight: 600; color: #cfd6df; }
"""

CARD_CSS = f"""
:host {{ background: #1b1f27; border: 1px solid #2d333b; border-left: 5px solid {COLOURS['normal']};
        border-radius: 9px; padding: 8px 10px 4px 12px; }}
:host(.status-warning) {{ border-left-color: {COLOURS['warning']}; }}
:host(.status-critical) {{ border-left-color: {COLOURS['critical']}; background: #2a1518;
        box-shadow: 0 0 0 1px {COLOURS['critical']}, 0 0 16px rgba(255, 59, 59, .45); }}
:host(.status-stale) {{ border-left-color: {COLOURS['stale']}; background: #171a1f;
        border-style: dashed solid dashed solid; }}
"""

OPS_CSS = CSS + """
.ops { display: flex; flex-direction: column; gap: 12px; margin-top: 10px; }
.ops-stat { min-width: 150px; }
.ops-bad .stat-value { color: #ff6b6b; } .ops-warn .stat-value { color: #ffc46b; }
.viewers { display: flex; flex-wrap: wrap; gap: 14px; align-items: center; font-size: .92em; }
.viewer { display: inline-flex; align-items: center; gap: 6px; padding: 4px 12px;
          border-radius: 14px; border: 1px solid #2d333b; background: #1b1f27; }
.viewer .dot { width: 8px; height: 8px; border-radius: 50%; background: #6e7681; }
a.viewer { color: #79c0ff; text-decoration: none; font-weight: 600; }
a.viewer:hover { border-color: #79c0ff; }
.viewer-up .dot { background: @normal@; }
.viewer-down { color: var(--muted); }
.muted { color: var(--muted); }
.svc-table { border-collapse: collapse; width: 100%; font-size: .9em; }
.svc-table th { text-align: left; color: var(--muted); font-weight: 600; font-size: .85em;
                border-bottom: 1px solid #2d333b; padding: 6px 10px; }
.svc-table td { padding: 8px 10px; border-bottom: 1px solid #21262d; vertical-align: top; }
.svc-table b { font-variant-numeric: tabular-nums; color: #e6e6e6; }
.svc-name { font-weight: 650; }
.svc-up { color: #8ff0b0; white-space: nowrap; } .svc-down { color: #ff6b6b; white-space: nowrap; }
.svc-error { color: #ffb3b3; font-size: .8em; max-width: 260px; overflow-wrap: anywhere; }
.svc-figures { color: #c9d1d9; line-height: 1.6; }
.svc-url { color: var(--faint); font-size: .82em; overflow-wrap: anywhere; }
.svc-url a { color: var(--muted); text-decoration: none; }
.svc-url a:hover { color: #79c0ff; text-decoration: underline; }
.ops-note { color: var(--faint); font-size: .8em; }
.ops-note code { color: var(--muted); }
"""

TABS_CSS = """
.bk-header .bk-tab { color: #c9d1d9; font-size: 15px; font-weight: 600; padding: 6px 18px; }
.bk-header .bk-tab.bk-active { color: #ff9f43; }
"""

WIDGET_CSS = "label { color: #c9d1d9 !important; font-weight: 600; }"


def _minify(css: str) -> str:
    """Whitespace out: every pane carries its sheet, so bytes here are bytes per card."""
    return " ".join(css.split())


def _paint(css: str) -> str:
    """Status colours from the one table (``@critical@`` and friends in the sheets above)."""
    for status, colour in COLOURS.items():
        css = css.replace(f"@{status}@", colour)
    return css


CSS, CARD_TEXT_CSS, SPARK_CSS, CARD_CSS, TABS_CSS, OPS_CSS = (
    _minify(_paint(c)) for c in (CSS, CARD_TEXT_CSS, SPARK_CSS, CARD_CSS, TABS_CSS, OPS_CSS))


def html_pane(obj: str = "", css: str = CSS, **kwargs: Any) -> pn.pane.HTML:
    # Escaping is render's job; sanitize_html would also strip our data attributes.
    return pn.pane.HTML(obj, stylesheets=[css], margin=0, **kwargs)
