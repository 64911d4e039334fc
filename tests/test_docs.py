"""The README is the entrance: short, and every link in it leads somewhere. (The docs site's own
links and API references are checked by `make docs`, which builds with --strict in CI.)"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_is_short_and_its_links_exist():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert len(local) > 20
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_every_nav_page_exists():
    """Every page mkdocs.yml's nav names is a file in docs/, or a notebook in examples/ that the
    docs hook renders as tutorials/NAME.md."""
    nav = re.findall(r":\s+(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert {"index.md", "getting-started.md", "reference/api.md"} <= set(nav)
    for entry in nav:
        if entry.startswith("tutorials/"):
            assert (ROOT / "examples" / (Path(entry).stem + ".ipynb")).is_file(), entry
        else:
            assert (ROOT / "docs" / entry).is_file(), entry
