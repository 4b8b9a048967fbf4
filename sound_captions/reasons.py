"""The one vocabulary of failure (and skip) reasons, shared by every stage that records one: the
sources (a manifest or list row), downloads, decoding, the dataset build, and the caption run's
report. A report's ``reason`` column holds one of these names; :data:`MEANING` says what each
means (``docs/captioning.md`` and ``docs/dataset.md`` show the same words).
"""

from __future__ import annotations

# -- a source row
MALFORMED = "malformed"
DUPLICATE = "duplicate"
UNKNOWN_LABEL = "unknown_label"
# -- a subtitle file used as labels (dataset build --subtitles)
SUBTITLE_ENCODING = "subtitle_encoding"
SUBTITLE_TIMING = "subtitle_timing"
SUBTITLE_OVERLAP = "subtitle_overlap"
EVENTS_PAST_END = "events_past_end"
# -- fetching (yt-dlp's classes; see download/reasons.py for how messages map to them)
UNAVAILABLE = "unavailable"
PRIVATE = "private"
REMOVED = "removed"
THROTTLED = "throttled"
GEO_BLOCKED = "geo_blocked"
UNSAFE_NAME = "unsafe_name"
# -- decoding
NOT_FOUND = "not_found"  # decode-level only: a stage turns it into UNAVAILABLE or UNREADABLE
DECODE_ERROR = "decode_error"
NO_AUDIO = "no_audio"
TOO_SHORT = "too_short"
EMPTY = "empty"
# -- finding inputs
UNREADABLE = "unreadable"
NOT_A_FILE = "not_a_file"
BAD_NAME = "bad_name"
BAD_URI = "bad_uri"
EMPTY_INPUT = "empty_input"
HIDDEN = "hidden"  # a skip, not a failure
# -- a caption run's own steps
UP_TO_DATE = "up_to_date"  # a skip
POSTPROCESS_ERROR = "postprocess_error"
SPEECH_TRACK = "speech_track"
WRITE_ERROR = "write_error"
OTHER = "other"

MEANING: dict[str, str] = {
    MALFORMED: "a source row that cannot be read (wrong fields, bad times or labels)",
    DUPLICATE: "the same clip listed again (the first is kept)",
    UNKNOWN_LABEL: "a label that is neither an AudioSet id nor a class name",
    SUBTITLE_ENCODING: "a subtitle file that is not UTF-8",
    SUBTITLE_TIMING: "a subtitle file with a broken or reversed cue time",
    SUBTITLE_OVERLAP: "a subtitle file with cues shown at once in the same place",
    EVENTS_PAST_END: "an event or subtitle cue that starts after the medium ends (wrong file or frame rate?)",
    UNAVAILABLE: "a URL answered 404/410 or the video is unavailable; a local file vanished",
    PRIVATE: "a private video",
    REMOVED: "removed (terminated account, copyright)",
    THROTTLED: "HTTP 429 after every retry",
    GEO_BLOCKED: "not available in this country",
    UNSAFE_NAME: "a clip id that cannot be a file name inside the scratch folder",
    NOT_FOUND: "ffmpeg found no such file or object",
    DECODE_ERROR: "ffmpeg cannot read the container or its audio (corrupt), or was killed",
    NO_AUDIO: "the container has no audio stream",
    TOO_SHORT: "less than half a second of audio",
    EMPTY: "a zero-length file, or no audio longer than half a second",
    UNREADABLE: "cannot be read: a missing S3 object or one we may not read, a folder that cannot be listed, a dangling symlink",
    NOT_A_FILE: "a FIFO, socket or device with a media name",
    BAD_NAME: "a local file name that is not UTF-8",
    BAD_URI: "text that is not a URI",
    EMPTY_INPUT: "a folder or prefix with no media",
    HIDDEN: "a name or folder starting with '.' (skipped)",
    UP_TO_DATE: "outputs exist for these settings and this input version (skipped)",
    POSTPROCESS_ERROR: "the video's scores could not be turned into cues",
    SPEECH_TRACK: "the video's speech subtitle file cannot be read or parsed",
    WRITE_ERROR: "an output could not be written",
    OTHER: "anything else (the message says what)",
}
