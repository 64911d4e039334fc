"""MkDocs hook: each notebook in examples/ becomes a page tutorials/NAME.md (markdown cells as
they are, code cells as Python blocks, stored text outputs as text blocks). The notebooks are
executed by the test suite (nbmake), not by the docs build."""

from __future__ import annotations

from pathlib import Path

import jupytext
from mkdocs.structure.files import File, Files

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def notebook_markdown(path: Path) -> str:
    nb = jupytext.read(path)
    parts = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            parts.append(cell.source)
        elif cell.cell_type == "code" and cell.source.strip():
            parts.append(f"```python\n{cell.source}\n```")
            for output in cell.get("outputs", []):
                text = output.get("text") or output.get("data", {}).get("text/plain")
                if text:
                    text = "".join(text) if isinstance(text, list) else text
                    parts.append(f"```text\n{text.rstrip()}\n```")
    parts.append(f"*This page is the notebook `examples/{path.name}`, which the test suite runs.*")
    return "\n\n".join(parts) + "\n"


def on_files(files: Files, config) -> Files:
    for path in sorted(EXAMPLES.glob("*.ipynb")):
        files.append(File.generated(config, f"tutorials/{path.stem}.md", content=notebook_markdown(path)))
    return files
