"""The roadmap in notebook 00 and the README's table of notebooks name the same library modules per notebook."""
from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _modules_by_notebook(text: str) -> dict[str, list[str]]:
    """Rows ``| 0N | ... |`` of a markdown table -> the backticked names in the first cell that has any."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and re.fullmatch(r"0\d", cells[0]):
            for cell in cells[3:]:
                names = re.findall(r"`(\w+)`", cell)
                if names:
                    rows[cells[0]] = names
                    break
    return rows


def test_notebook_00_roadmap_names_the_readme_modules_for_every_notebook():
    cells = json.loads((REPO / "notebooks" / "00_overview_and_setup.ipynb").read_text())["cells"]
    roadmap = next("".join(c["source"]) for c in cells
                   if c["cell_type"] == "markdown" and "".join(c["source"]).startswith("## 2. The roadmap"))
    in_notebook = _modules_by_notebook(roadmap)
    in_readme = _modules_by_notebook((REPO / "README.md").read_text())
    assert sorted(in_notebook) == [f"0{i}" for i in range(9)], sorted(in_notebook)
    assert in_notebook == in_readme
