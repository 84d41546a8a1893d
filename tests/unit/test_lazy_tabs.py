"""The dashboard's other tabs are built on first use, once (a session that never opens them
does not pay for them, nor must its closing give them back)."""

from __future__ import annotations

from types import SimpleNamespace

import panel as pn

from sensorlib.dashboard.app import LazyTabs


def test_a_tab_is_built_when_first_asked_for_and_only_then() -> None:
    built: list[int] = []

    def view(n: int) -> SimpleNamespace:
        built.append(n)
        return SimpleNamespace(layout=pn.pane.Markdown(f"tab {n}"))

    tabs = LazyTabs({1: lambda: view(1), 2: lambda: view(2)})
    assert tabs.slot(1).objects == [] and built == [] and tabs.built() == []
    first = tabs.get(1)
    assert tabs.get(1) is first and built == [1] and tabs.built() == [1]
    assert tabs.slot(1).objects == [first.layout] and tabs.slot(2).objects == []
    tabs.clear()
    assert tabs.built() == []
