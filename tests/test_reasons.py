"""One vocabulary of failure reasons (issue 13): every stage records its reasons through
``sound_captions/reasons.py``, and the docs' reason table speaks the same words."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import sound_captions
from sound_captions import reasons
from sound_captions.download import REASONS as DOWNLOAD_REASONS

PACKAGE = Path(sound_captions.__file__).parent
ROOT = PACKAGE.parent
FAILURE_TYPES = {"VideoResult", "InputFailure", "SourceFailure", "ListingSkip", "FetchError"}


def _calls(importing_reasons: bool = False):
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if importing_reasons and "from sound_captions import reasons\n" not in text:
            continue
        for node in ast.walk(ast.parse(text, str(path))):
            yield path, node


def test_every_reason_named_in_the_code_is_in_the_vocabulary():
    used = {
        node.attr for _, node in _calls(importing_reasons=True)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "reasons"
    }  # fmt: skip
    assert used, "the scan found no use of the vocabulary"
    assert {name for name in used if not hasattr(reasons, name)} == set()
    assert set(DOWNLOAD_REASONS) <= set(reasons.MEANING)


def test_no_failure_is_recorded_with_a_reason_spelled_out_by_hand():
    spelled = []
    for path, node in _calls():
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in FAILURE_TYPES:
            statuses = {"failed", "skipped", "captioned"}
            literals = [a.value for a in node.args[1:3] if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value not in statuses]
            spelled += [f"{path.relative_to(PACKAGE)}:{node.lineno}: {v}" for v in literals if re.fullmatch(r"[a-z_]+", v)]
    assert spelled == []


def test_the_docs_table_uses_the_vocabulary():
    text = (ROOT / "docs" / "captioning.md").read_text()
    table = re.findall(r"^\| `([a-z_]+)`(?:, `([a-z_]+)`)? \|", text, re.M)
    named = {name for row in table for name in row if name}
    assert {"decode_error", "postprocess_error", "speech_track", "write_error"} <= named
    assert named - set(reasons.MEANING) == set()
