"""Every notebook's parameter cell is one papermill can read: each name, its type and default."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import nbformat
import pytest

from .conftest import NOTEBOOKS, PYTHON

ALL = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def parameter_cell(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name}: {len(cells)} cells tagged 'parameters'"
    return cells[0].source


def assigned(source: str) -> dict[str, object]:
    """What Python itself assigns in the cell: name -> default value."""
    out = {}
    for node in ast.parse(source).body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name):
            out[target.id] = ast.literal_eval(node.value)
    return out


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_papermill_reads_every_parameter_with_its_type_and_default(path: Path) -> None:
    from papermill.inspection import inspect_notebook

    expected = assigned(parameter_cell(path))
    assert expected, f"{path.name}: no parameters"
    found = inspect_notebook(str(path))
    assert set(found) == set(expected), path.name
    for name, parameter in found.items():
        assert parameter["inferred_type_name"] not in ("None", "Unknown type"), (path.name, name)
        assert ast.literal_eval(parameter["default"]) == expected[name], (path.name, name)
        assert parameter["help"], f"{path.name}: {name} has no help comment"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_help_notebook_lists_them_without_parse_warnings(path: Path) -> None:
    result = subprocess.run([PYTHON, "-m", "papermill", "--help-notebook", str(path)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "Unable to parse" not in result.stdout + result.stderr
    for name in assigned(parameter_cell(path)):
        assert re.search(rf"^\s+{name}: \S+.* \(default ", result.stdout, re.MULTILINE), \
            (name, result.stdout)
