"""docs/config.md's field tables are generated from the config dataclasses: they cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

from hrrkit.models.config import FIELD_DOCS, DetectorConfig, field_rows
from hrrkit.train.config import FIELD_DOCS as TRAIN_DOCS
from hrrkit.train.config import TrainConfig
from hrrkit.train.recipe import DATA_FIELD_DOCS, DataConfig, config_reference_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"
BEGIN, END = "<!-- BEGIN GENERATED: config reference -->", "<!-- END GENERATED: config reference -->"
REGENERATE = (
    "regenerate it: python -c \"from hrrkit.train.recipe import config_reference_markdown as c; print(c())\" "
    "and paste between the markers in docs/config.md"
)


def test_every_field_has_a_meaning_and_no_entry_is_stale():
    assert {r[0] for r in field_rows(DetectorConfig, FIELD_DOCS)} == set(FIELD_DOCS)
    assert {r[0] for r in field_rows(TrainConfig, TRAIN_DOCS)} == set(TRAIN_DOCS)
    data = {f"data.{r[0]}" for r in field_rows(DataConfig, {k[5:]: v for k, v in DATA_FIELD_DOCS.items()})}
    assert data == set(DATA_FIELD_DOCS)


def test_docs_config_md_holds_the_generated_tables():
    text = DOC.read_text()
    match = re.search(re.escape(BEGIN) + r"\n(.*?)" + re.escape(END), text, flags=re.S)
    assert match, f"{DOC}: markers missing"
    assert match.group(1).strip() == config_reference_markdown().strip(), f"{DOC} is out of date; {REGENERATE}"
