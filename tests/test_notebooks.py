"""Executes every notebook top to bottom (fast mode: the same cells on less data)."""

import pathlib
import re

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_three_notebooks():
    assert [p.stem for p in NOTEBOOKS] == ["01_quickstart", "02_keras_tuner", "03_export_and_serving"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    committed = path.read_bytes()
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    # Committed with the outputs of their full run, so that a reader sees the figures.
    assert all(c.get("execution_count") for c in code), "commit notebooks executed in full"
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))
    for cell in code:
        cell["outputs"] = []
    imports_tests = re.compile(r"^\s*(from|import)\s+tests\b", re.MULTILINE)
    assert not any(imports_tests.search(c.source) for c in notebook.cells), "notebooks use the public API only"
    monkeypatch.setenv("CRNN_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # Raises CellExecutionError on any cell error.
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert path.read_bytes() == committed  # Fast mode never rewrites the committed notebook.
