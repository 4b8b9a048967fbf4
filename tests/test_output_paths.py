"""Names from outside → output paths (``sound_captions.paths``): for any name, local or S3 form,
the output paths stay inside their root, and two different inputs never share an output."""

from __future__ import annotations

import os
import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sound_captions import storage
from sound_captions.caption.inputs import _dedupe, media_item
from sound_captions.paths import (
    MAX_SEGMENT_BYTES,
    UnsafeNameError,
    check_rel,
    join_inside,
    safe_file_name,
    safe_output_rel,
)

#: What a caption run writes per input (``<rel><suffix>``).
OUTPUT_SUFFIXES = (".vtt", ".scores.parquet", ".sdh.vtt")
ROOTS = ("/srv/captions/out", "s3://bucket/captions/out")

# Characters that matter for paths, plus a few that do not, so that near-collisions are common.
TRICKY = list("ab./\\%~_-: 2EF") + ["\x00", "\x01", "\x1f", "\x7f", "\u202e", "\u200b", "\u2028", "é", "\udcff", "\ud800"]
SEGMENTS = ["..", ".", "", "a", "%2E%2E", "%2E", "%", "%~", "a.sdh", "a%2Esdh", "x\\..", "\x00", "~"]
names = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(TRICKY), max_size=24),
    st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=6).map("/".join),
    st.binary(max_size=40).map(os.fsdecode),  # a local file name that is not UTF-8
    st.text(alphabet=st.sampled_from(["a", "é", "\x01", "/"]), min_size=150, max_size=700),  # long names
)


def outputs(rel: str) -> set[str]:
    return {rel + suffix for suffix in OUTPUT_SUFFIXES}


def assert_inside(root: str, uri: str) -> None:
    """Checked here without the code under test: no segment can move the path, and it starts
    with the root."""
    if storage.is_s3(root):
        bucket, prefix = storage.split_s3(root + "/")
        got_bucket, key = storage.split_s3(uri)
        assert got_bucket == bucket and key.startswith(prefix)
        parts = key[len(prefix) :].split("/")
    else:
        assert uri.startswith(root + "/") and os.path.normpath(uri) == uri
        parts = uri[len(root) + 1 :].split("/")
    assert parts and all(p not in ("", ".", "..") for p in parts), uri
    assert not any(ch in p for p in parts for ch in ("\\", "\x00")), uri


@settings(max_examples=400, deadline=None)
@given(names)
def test_any_name_gives_outputs_inside_the_root(name: str) -> None:
    rel = safe_output_rel(name)
    assert check_rel(rel) == rel
    *folders, last = rel.split("/")
    assert all(len(s.encode("utf-8")) <= MAX_SEGMENT_BYTES for s in folders)
    # a file name (with the longest suffix and an atomic write's temporary affixes) fits 255 bytes
    assert len(last.encode("utf-8")) + len(".scores.parquet") + 14 <= 255
    for root in ROOTS:
        for out in outputs(rel):
            assert_inside(root, join_inside(root, out))
    assert "/" not in safe_file_name(name) and safe_file_name(name) not in ("", ".", "..")


@settings(max_examples=200, deadline=None)
@given(st.lists(names, min_size=2, max_size=40, unique=True))
def test_different_names_never_share_an_output(batch: list[str]) -> None:
    seen: dict[str, str] = {}
    for name in batch:
        for out in outputs(safe_output_rel(name)):
            assert out not in seen, (name, seen.get(out))
            seen[out] = name
    files = [safe_file_name(n) for n in batch]
    assert len(set(files)) == len(files)


@settings(max_examples=200, deadline=None)
@given(st.lists(names, min_size=1, max_size=30), st.sampled_from(["s3://lib/videos/", "/lib/videos/"]))
def test_listed_inputs_never_share_an_output(keys: list[str], root: str) -> None:
    """The caption inputs path: names relative to a listed root (S3 keys or local files, with
    media suffixes that the outputs drop: ``a.mp4`` and ``a.mkv``) → unique output paths."""
    items = []
    for i, key in enumerate(keys):
        for suffix in (".mp4", ".mkv") if i % 3 == 0 else (".wav",):
            items.append(media_item(root + key + suffix, key + suffix, "v"))
    kept = _dedupe(items)
    assert len(kept) == len({item.uri for item in items})
    seen: set[str] = set()
    for item in kept:
        for out in outputs(item.rel):
            assert out not in seen
            seen.add(out)
            assert_inside(ROOTS[1], join_inside(ROOTS[1], out))


@pytest.mark.parametrize(
    ("name", "rel"),
    [
        ("a/b/video", "a/b/video"),
        ("sub/../../../../../tmp/probe/escaped", "sub/%2E%2E/%2E%2E/%2E%2E/%2E%2E/%2E%2E/tmp/probe/escaped"),
        ("..%2F..%2Fx", "..%252F..%252Fx"),
        ("/etc/passwd", "%/etc/passwd"),
        ("a//b/", "a/%/b/%"),
        ("", "%"),
        (".", "%2E"),
        ("a\\..\\b", "a%5C..%5Cb"),
        ("nul\x00here", "nul%00here"),
        ("video.sdh", "video%2Esdh"),
        ("100%", "100%25"),
        ("caf\u00e9 & friends", "caf\u00e9 & friends"),
        (os.fsdecode(b"latin\xe9"), "latin%E9"),
    ],
)
def test_the_documented_rule(name: str, rel: str) -> None:
    assert safe_output_rel(name) == rel


def test_undecodable_bytes_and_lone_surrogates_stay_apart() -> None:
    """``\\ud800`` is UTF-8 ``ED A0 80`` with surrogatepass; the bytes ED A0 80 of a file name
    that is not UTF-8 must not land on the same output."""
    from_bytes = safe_output_rel(os.fsdecode(b"\xed\xa0\x80"))
    assert from_bytes == "%ED%A0%80" and safe_output_rel("\ud800") == "%uD800"


@pytest.mark.parametrize("rel", ["../x", "a/../../x", "/abs", "a//b", "", ".", "a/./b", "a\\b", "x\x00", "x\ny"])
@pytest.mark.parametrize("root", ROOTS)
def test_join_inside_refuses_what_would_leave_or_blur_the_root(root: str, rel: str) -> None:
    with pytest.raises(UnsafeNameError):
        join_inside(root, rel)


def test_join_inside_accepts_the_encoded_names_and_relative_roots(tmp_path) -> None:
    assert join_inside(str(tmp_path), "a/%2E%2E/b.vtt") == str(tmp_path / "a" / "%2E%2E" / "b.vtt")
    assert join_inside("out", "x.vtt") == posixpath.join("out", "x.vtt")
    assert join_inside("s3://b", "x.vtt") == "s3://b/x.vtt"
    assert join_inside("file://" + str(tmp_path), "x.vtt") == str(tmp_path / "x.vtt")
