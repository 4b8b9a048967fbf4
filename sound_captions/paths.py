"""Names from outside → output paths that stay inside their root (one rule for every stage).

S3 keys, file names, URLs, manifest sources and clip ids are chosen by whoever put the input
there. They become output paths only through this module:

- :func:`safe_output_rel` turns an input's relative name (``a/b/video``) into a relative output
  path that is always inside the root it is joined to, and never the same for two different
  names (the rule is below and in docs/security.md);
- :func:`safe_file_name` does the same for a name that must stay one path segment;
- :func:`join_inside` joins a root and a relative path after checking that the path is clean
  (it refuses, with :class:`UnsafeNameError`, anything that is not), so a path read back from
  a report or an archive cannot point elsewhere either.

The rule, per ``/``-separated segment of the name:

1. A segment is *plain* when it is not empty, not ``.`` or ``..``, at most
   :data:`MAX_SEGMENT_BYTES` bytes of UTF-8, and has none of: ``%``, ``\\``, ``/``, a character
   of Unicode category Cc (controls, NUL included), Cf (format: bidi overrides, zero-width
   characters), Cs (a surrogate: a byte of a file name that is not UTF-8), Zl or Zp (line and
   paragraph separators). A plain segment is kept as it is.
2. Any other segment is percent-encoded: each of those characters becomes ``%XX`` for each of
   its UTF-8 bytes (a surrogate from an undecodable file name becomes the byte it stands for,
   any other lone surrogate ``%uXXXX``);
   the dots of ``.`` and ``..`` become ``%2E``; an empty segment (``a//b``, a leading ``/``, a
   trailing ``/``, an empty name) becomes ``%``.
3. An encoded segment still longer than :data:`MAX_SEGMENT_BYTES` is cut and ends with ``%~``
   and 32 hex digits of the SHA-256 of the original segment.
4. The output suffixes are added to the last segment (``.vtt``, ``.scores.parquet``,
   ``.sdh.vtt``), so a last segment ending in ``.sdh`` (``video.sdh``, whose ``.vtt`` would be
   ``video``'s ``.sdh.vtt``) has that dot encoded: ``video%2Esdh``.

Plain names never contain ``%``; every changed segment does, and its encoding can be decoded
back (rule 3 excepted, which relies on SHA-256), so two different names never give the same
path. Case-insensitive or normalising file systems (macOS, Windows) can still fold two names
that differ only in case or Unicode normalisation; the outputs of this project are meant for
Linux file systems and S3.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata

from sound_captions import storage

#: Longest segment kept (bytes of UTF-8): leaves room for ``.scores.parquet`` and the temporary
#: name of an atomic write within the usual 255-byte limit of a file name.
MAX_SEGMENT_BYTES = 200
#: Endings of a last segment that would collide with another name's output suffix.
RESERVED_ENDINGS = (".sdh",)
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_HASH_HEX = 32


class UnsafeNameError(storage.BadURIError):
    """A relative path that would leave its root (or is not clean) was given to a writer."""


def _plain_char(ch: str) -> bool:
    return ch not in "%\\/" and unicodedata.category(ch) not in _UNSAFE_CATEGORIES


def _encode_char(ch: str) -> str:
    if "\udc80" <= ch <= "\udcff":  # os.fsdecode's stand-in for an undecodable byte
        return f"%{ord(ch) - 0xDC00:02X}"
    if "\ud800" <= ch <= "\udfff":  # any other lone surrogate (no file or key has one)
        return f"%u{ord(ch):04X}"
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8"))


def _is_plain(segment: str) -> bool:
    return (
        segment not in ("", ".", "..")
        and all(_plain_char(ch) for ch in segment)
        and len(segment.encode("utf-8", errors="surrogatepass")) <= MAX_SEGMENT_BYTES
    )


def _encode_segment(segment: str) -> str:
    if _is_plain(segment):
        return segment
    if segment == "":
        return "%"
    if segment in (".", ".."):
        return "%2E" * len(segment)
    tokens = [ch if _plain_char(ch) else _encode_char(ch) for ch in segment]
    encoded = "".join(tokens)
    if len(encoded.encode("utf-8")) <= MAX_SEGMENT_BYTES:
        return encoded
    digest = hashlib.sha256(segment.encode("utf-8", errors="surrogatepass")).hexdigest()[:_HASH_HEX]
    budget = MAX_SEGMENT_BYTES - 2 - _HASH_HEX
    kept, size = [], 0
    for token in tokens:  # cut between characters (never inside a %XX or a UTF-8 sequence)
        width = len(token.encode("utf-8"))
        if size + width > budget:
            break
        kept.append(token)
        size += width
    return "".join(kept) + "%~" + digest


def safe_file_name(name: str) -> str:
    """``name`` as one path segment by the same rule (a ``/`` in it is encoded as ``%2F``)."""
    return _encode_segment(str(name))


def safe_output_rel(name: str) -> str:
    """An input's relative name (``/``-separated, suffix already removed) → the relative output
    path that mirrors it, always inside the root it is joined to (see the module docstring)."""
    segments = [_encode_segment(s) for s in str(name).split("/")]
    last = segments[-1]
    for ending in RESERVED_ENDINGS:
        if last.endswith(ending):
            segments[-1] = last[: -len(ending)] + "%2E" + ending[1:]
    return "/".join(segments)


def check_rel(rel: str) -> str:
    """``rel`` itself when it is a clean relative path: ``/``-separated segments that are not
    empty, ``.`` or ``..``, with no backslash and no control, format or separator character.
    Raises :class:`UnsafeNameError` otherwise (``%`` is allowed: encoded names contain it)."""
    text = str(rel)
    for segment in text.split("/"):
        if segment in ("", ".", ".."):
            raise UnsafeNameError(f"unsafe relative path {text!r}: empty, '.' or '..' segment")
        bad = [ch for ch in segment if ch != "%" and not _plain_char(ch)]
        if bad:
            raise UnsafeNameError(f"unsafe relative path {text!r}: contains {''.join(bad)!r}")
    return text


def join_inside(root: str | os.PathLike, rel: str) -> str:
    """``root`` joined with the clean relative path ``rel`` (:func:`check_rel`), checked to be
    below ``root``: the only way the writers of this project turn a name into a URI."""
    uri = storage.join(root, check_rel(rel))
    base = storage.check_uri(root)
    if storage.is_s3(base):
        bucket, prefix = storage.split_s3(base.rstrip("/") + "/")
        ub, key = storage.split_s3(uri)
        inside = ub == bucket and key.startswith(prefix) and len(key) > len(prefix)
    else:
        top = os.path.abspath(storage.local_path(base))
        path = os.path.abspath(uri)
        inside = path != top and os.path.commonpath([top, path]) == top
    if not inside:
        raise UnsafeNameError(f"{rel!r} does not stay inside {base}")
    return uri
