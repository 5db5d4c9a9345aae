"""Docs stay navigable: every relative link in README.md and docs/*.md points at a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_resolve(page):
    missing = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+://|^mailto:|^#", target):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def _python_block_after(page: Path, heading: str) -> str:
    """The first ```python block under ``heading`` of ``page``."""
    text = page.read_text()
    section = text[text.index(heading):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"{page.name}: no python block under {heading!r}"
    return match.group(1)


def test_readme_layers_snippet_runs_as_pasted():
    """README's "Using the layers" runs as written, with the shipped retrospector (no weights to fetch)."""
    import torch

    namespace: dict = {}
    exec(compile(_python_block_after(ROOT / "README.md", "## Using the layers"), "README.md", "exec"), namespace)
    assert namespace["logits"].shape == (2,) and torch.isfinite(namespace["loss"])
    grads = [p.grad for p in namespace["head"].parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
