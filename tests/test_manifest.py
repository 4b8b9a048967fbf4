"""The user manifest CSV: good rows become requests, bad rows become explained failures."""

from __future__ import annotations

from sound_captions.ontology import Ontology
from sound_captions.sources.manifest import (
    make_clip_id,
    parse_manifest,
    read_manifest,
    write_manifest,
)

MANIFEST = """source,start_s,end_s,labels
clips/a.mp4,,,Dog
clips/a.mp4,2,4,"Dog; Bark"
s3://bucket/b.mkv,0,10,"/m/04rlf,/m/0mkg"
https://example.org/c.webm,1.5,,
clips/d.mp4,,,Beep, bleep
clips/e.mp4,4,2,Music
clips/f.mp4,x,3,Music
clips/g.mp4,,,Dgo
clips/a.mp4,,,Dog
"""


def test_parses_good_rows_and_explains_bad_ones():
    requests, failures = parse_manifest(MANIFEST, Ontology.load(), base="/data", origin="m.csv")
    assert [r.source for r in requests] == ["/data/clips/a.mp4", "/data/clips/a.mp4", "s3://bucket/b.mkv", "https://example.org/c.webm"]
    assert requests[0].labels == ("/m/0bt9lr",)
    assert requests[1].labels == ("/m/0bt9lr", "/m/05tny_") and (requests[1].start_s, requests[1].end_s) == (2.0, 4.0)
    assert requests[2].labels == ("/m/04rlf", "/m/0mkg")
    assert requests[3].labels == () and requests[3].end_s is None  # an explicit negative
    reasons = {f.item: f.reason for f in failures}
    assert reasons == {"m.csv:6": "malformed", "m.csv:7": "malformed", "m.csv:8": "malformed", "m.csv:9": "unknown_label", "m.csv:10": "duplicate"}
    assert "4 fields" in next(f.message for f in failures if f.item == "m.csv:6")
    assert len({r.clip_id for r in requests}) == len(requests)


def test_clip_ids_are_readable_and_distinct():
    a = make_clip_id("/x/My Video.mp4", 1.0, 2.5)
    assert a.startswith("My-Video_1000-2500_")
    assert a != make_clip_id("/y/My Video.mp4", 1.0, 2.5)


def test_roundtrip_through_a_file(tmp_path):
    uri = str(tmp_path / "manifest.csv")
    write_manifest([("v/a.mp4", None, 3.0, ["Baby cry, infant cry"]), ("v/b.mp4", 1.0, 2.0, [])], uri)
    requests, failures = read_manifest(uri)
    assert not failures
    assert requests[0].source == str(tmp_path / "v" / "a.mp4") and requests[0].end_s == 3.0
    assert requests[0].labels == (Ontology.load().resolve("Baby cry, infant cry"),)
