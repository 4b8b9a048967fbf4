"""One video's outputs: ``<out>/<rel>.scores.parquet``, then ``<rel>.vtt`` (the completion
mark), and with ``--merge-with-speech`` ``<rel>.sdh.vtt``; and whether a rerun may skip it.

A rerun skips a video only when its ``.vtt`` note names the same *settings* (the bundle, the
caption texts in use and the post-processing options: everything that decides the cues) and
the same input version, and, when a combined track is asked for and the video has a speech
track, its ``.sdh.vtt`` exists and was made from the speech track as it is now.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections import defaultdict
from dataclasses import asdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sound_captions import storage
from sound_captions.bundle import ModelBundle
from sound_captions.caption.cues import Cue, CueFileError, read_cues
from sound_captions.caption.inputs import MediaItem
from sound_captions.caption.postprocess import PostprocessConfig
from sound_captions.caption.speech import find_speech_track, merge_tracks
from sound_captions.caption.vtt import render_vtt
from sound_captions.paths import join_inside

_NOTE = re.compile(r"^NOTE sound-captions bundle=(\S+)(?: settings=(\S+))? input=(.*)$", re.M)
_SDH_NOTE = re.compile(r"^NOTE sound-captions speech=(\S+) sounds=(\S+)$", re.M)


class SpeechTrackError(Exception):
    """A speech subtitle file that cannot be read or parsed (fails its video alone)."""


def settings_digest(bundle_digest: str, caption_text: dict[str, str], postprocess: PostprocessConfig) -> str:
    """16 hex digits naming everything that decides a video's cues besides its audio."""
    payload = {"bundle": bundle_digest, "captions": dict(sorted(caption_text.items())), "postprocess": asdict(postprocess)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def output_uris(out: str, item: MediaItem) -> tuple[str, str]:
    """``<out>/<rel>.vtt`` and ``<out>/<rel>.scores.parquet``, checked to be inside ``out``."""
    return join_inside(out, item.rel + ".vtt"), join_inside(out, item.rel + ".scores.parquet")


def sdh_uri(out: str, item: MediaItem) -> str:
    return join_inside(out, item.rel + ".sdh.vtt")


def _text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_done(out: str, item: MediaItem, settings: str, speech_root: str | None = None) -> bool:
    """The outputs exist for the same settings and input version (the .vtt is written last),
    and the combined track, where one is asked for, is there and up to date."""
    try:
        vtt_uri, scores_uri = output_uris(out, item)
        if not storage.exists(vtt_uri) or not storage.exists(scores_uri):
            return False
        vtt = storage.read_text(vtt_uri)
        match = _NOTE.search(vtt)
        if not match or match.group(2) != settings or match.group(3).strip() != item.version:
            return False  # another model, vocabulary or post-processing (or an older note)
        if speech_root:
            speech_uri = find_speech_track(speech_root, item.rel)
            if speech_uri is not None:
                sdh = _SDH_NOTE.search(storage.read_text(sdh_uri(out, item))) if storage.exists(sdh_uri(out, item)) else None
                if sdh is None or sdh.groups() != (_text_digest(storage.read_text(speech_uri)), _text_digest(vtt)):
                    return False
    except storage.StorageError:
        return False
    return True


def scores_table(scores: np.ndarray, bundle: ModelBundle, extra: dict | None = None) -> pa.Table:
    columns = {"second": pa.array(np.arange(scores.shape[0], dtype=np.int32))}
    for j, mid in enumerate(bundle.labels):
        columns[mid] = pa.array(scores[:, j].astype(np.float32))
    metadata = {
        "labels": json.dumps(bundle.labels),
        "label_names": json.dumps(bundle.label_names),
        "thresholds": json.dumps(bundle.thresholds),
        **{k: json.dumps(v) for k, v in (extra or {}).items()},
    }
    return pa.table(columns).replace_schema_metadata({k.encode(): v.encode() for k, v in metadata.items()})


def _with_note(vtt: str, note: str) -> str:
    note += "\n\n"
    return vtt.replace("WEBVTT\n\n", "WEBVTT\n\n" + note, 1) if vtt.startswith("WEBVTT\n\n") else vtt.rstrip("\n") + "\n\n" + note


def write_outputs(out: str, item: MediaItem, scores: np.ndarray, cues: list[Cue], bundle: ModelBundle, digest: str, settings: str) -> tuple[str, str]:
    """Write ``.scores.parquet`` then ``.vtt`` (the completion mark), each atomically → the
    ``.vtt``'s URI and text."""
    vtt_uri, scores_uri = output_uris(out, item)
    buffer = io.BytesIO()
    pq.write_table(scores_table(scores, bundle, {"bundle": digest, "settings": settings, "input_version": item.version, "input": item.uri}), buffer)
    storage.write_bytes(scores_uri, buffer.getvalue())
    vtt = _with_note(render_vtt(cues), f"NOTE sound-captions bundle={digest} settings={settings} input={item.version}")
    storage.write_text(vtt_uri, vtt)
    return vtt_uri, vtt


def write_sdh(out: str, item: MediaItem, cues: list[Cue], vtt: str, speech_root: str) -> str | None:
    """Write ``<out>/<rel>.sdh.vtt`` when ``<speech_root>/<rel>.vtt|.srt`` exists; its note
    names the speech track and the sound track it was made from. A speech file that cannot be
    read or parsed raises :class:`SpeechTrackError`; a failed write, ``StorageError``."""
    speech_uri = find_speech_track(speech_root, item.rel)
    if speech_uri is None:
        return None
    try:
        speech_text = storage.read_text(speech_uri)
        speech = read_cues(speech_text, srt=speech_uri.lower().endswith(".srt"), strict=False)
        merged = merge_tracks(speech, cues)
    except UnicodeDecodeError as exc:
        raise SpeechTrackError(f"{speech_uri}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from exc
    except (CueFileError, ValueError) as exc:  # webvtt-py refuses a cue text it cannot write
        raise SpeechTrackError(f"{speech_uri}: {exc}") from exc
    uri = sdh_uri(out, item)
    note = f"NOTE sound-captions speech={_text_digest(speech_text)} sounds={_text_digest(vtt)}"
    storage.write_text(uri, _with_note(merged, note))
    return uri


def top_labels(cues: list[Cue], k: int = 3) -> list[str]:
    seconds: dict[str, int] = defaultdict(int)
    for cue in cues:
        seconds[cue.label] += cue.duration_ms
    return [label for label, _ in sorted(seconds.items(), key=lambda kv: -kv[1])[:k]]
