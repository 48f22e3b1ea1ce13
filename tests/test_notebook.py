"""The quickstart notebook runs top to bottom (the toy-world CLIP on the synthetic world)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_executes(tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = "".join(
        str(o.get("text", "")) + str(o.get("data", ""))
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    assert "TOY WORLD" in outputs and "RANDOM" not in outputs
    assert "test accuracy" in outputs
    assert (tmp_path / "quickstart-output" / "report" / "index.html").exists()
    assert not any(o.get("output_type") == "error" for c in notebook.cells for o in c.get("outputs", []))
