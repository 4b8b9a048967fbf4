"""URIs → bytes and back: local paths, ``file://`` and ``s3://bucket/key``.

Every path argument in the project is a URI. S3 access uses boto3 with the standard AWS
configuration (environment variables, profile, instance role); ``AWS_ENDPOINT_URL`` points it at
an S3-compatible server (moto, MinIO, Ceph). Writes are atomic: a local file is written under a
temporary name in the same directory and renamed; an S3 object appears only when its upload
completes, so readers never see half an object.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import stat as stat_mod
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sound_captions import reasons


class StorageError(OSError):
    """A URI could not be read, written or listed; the message names the URI."""


class BadURIError(StorageError, ValueError):
    """The text is not a URI this project can use."""


@dataclass(frozen=True)
class ObjectInfo:
    """What identifies one version of a stored file: size and a version tag (mtime or ETag)."""

    uri: str
    size_bytes: int
    version: str


@dataclass(frozen=True)
class ListingSkip:
    """An entry a listing found but does not yield as a file, and why.

    ``reason``: ``hidden`` (a segment of its path below the listed root starts with ``.``),
    ``unreadable`` (it cannot be stat'ed: a dangling symlink, no permission) or ``not_a_file``
    (a FIFO, socket or device with a media name, which a decoder would block on).
    """

    uri: str
    reason: str
    message: str


HIDDEN_MESSAGE = "hidden: its name or a folder above it starts with '.'"


_URL_QUERY = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#'\"]*)\?[^\s'\"]*")


def redact_urls(text: str) -> str:
    """``text`` with the query string of every URL in it replaced by ``?…``: a presigned S3 URL
    carries the access key id, a signature and the session token there, and tool messages
    (ffmpeg's stderr) that end in reports and logs must not."""
    return _URL_QUERY.sub(lambda m: m.group(1) + "?…", text)


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def is_url(uri: str) -> bool:
    return str(uri).split("://", 1)[0] in ("http", "https")


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` → ``("bucket", "a/b")``."""
    # not urlparse: a key may hold "?", "#" or ";", which are part of the key, not a query
    text = str(uri)
    bucket, _, key = text[len("s3://") :].partition("/") if text.startswith("s3://") else ("", "", "")
    if not bucket:
        raise BadURIError(f"not an s3:// URI with a bucket: {uri!r}")
    return bucket, key


def local_path(uri: str | os.PathLike) -> Path:
    """The local filesystem path of a plain path or ``file://`` URI."""
    text = os.fspath(uri)
    if text.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(text).path))
    if "://" in text:
        raise BadURIError(f"not a local path: {text!r}")
    return Path(text)


def check_uri(uri: str | os.PathLike) -> str:
    """Validate a storage URI (local, file:// or s3://) and return it as text."""
    text = os.fspath(uri)
    if not text:
        raise BadURIError("empty URI")
    if is_s3(text):
        split_s3(text)
    elif "://" in text and not text.startswith("file://"):
        raise BadURIError(f"unsupported URI scheme (use a local path, file:// or s3://): {text!r}")
    return text


def join(uri: str | os.PathLike, *parts: str) -> str:
    """Join path parts onto a URI with ``/`` (S3) or the OS separator (local)."""
    text = check_uri(uri)
    if is_s3(text):
        base = text.rstrip("/")
        return "/".join([base, *(p.strip("/") for p in parts if p)])
    return str(local_path(text).joinpath(*parts))


@functools.lru_cache(maxsize=4)
def _s3_client_for(pid: int, endpoint: str | None):
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=endpoint or None)


def s3_client():
    """A boto3 S3 client for this process (clients are not shared across forks)."""
    return _s3_client_for(os.getpid(), os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))


def _s3_error(uri: str, exc: Exception) -> StorageError:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    if code in ("NoSuchKey", "404", "NotFound"):
        return StorageError(f"{uri}: no such object")
    if code in ("NoSuchBucket",):
        return StorageError(f"{uri}: no such bucket")
    return StorageError(f"{uri}: {exc}")


def read_bytes(uri: str | os.PathLike) -> bytes:
    text = check_uri(uri)
    if is_s3(text):
        bucket, key = split_s3(text)
        try:
            return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:  # botocore raises many types; the message keeps the cause
            raise _s3_error(text, exc) from exc
    try:
        return local_path(text).read_bytes()
    except OSError as exc:
        raise StorageError(f"{text}: {exc.strerror or exc}") from exc


def read_text(uri: str | os.PathLike, encoding: str = "utf-8") -> str:
    return read_bytes(uri).decode(encoding)


def write_bytes(uri: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` atomically (temporary file + rename, or one S3 PUT)."""
    text = check_uri(uri)
    if is_s3(text):
        bucket, key = split_s3(text)
        try:
            s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        except Exception as exc:
            raise _s3_error(text, exc) from exc
        return
    _write_atomically(local_path(text), lambda handle: handle.write(data))


def _write_atomically(path: Path, fill) -> None:
    """Write a local file by ``fill(handle)`` into a temporary file beside it, fsync, rename and
    fsync the folder: a reader sees the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fsync_dir(path: Path) -> None:
    """Make a rename durable (best effort: some file systems cannot fsync a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_text(uri: str | os.PathLike, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def upload_file(local: str | os.PathLike, uri: str | os.PathLike) -> None:
    """Copy a finished local file to ``uri`` atomically (multipart upload on S3 for big files)."""
    text = check_uri(uri)
    if is_s3(text):
        bucket, key = split_s3(text)
        try:
            s3_client().upload_file(os.fspath(local), bucket, key)
        except Exception as exc:
            raise _s3_error(text, exc) from exc
        return
    with open(local, "rb") as source:
        _write_atomically(local_path(text), lambda handle: shutil.copyfileobj(source, handle, 2**20))


def exists(uri: str | os.PathLike) -> bool:
    text = check_uri(uri)
    if is_s3(text):
        bucket, key = split_s3(text)
        try:
            s3_client().head_object(Bucket=bucket, Key=key)
            return True
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            raise _s3_error(text, exc) from exc
    return local_path(text).exists()


def stat(uri: str | os.PathLike) -> ObjectInfo:
    """Size and version tag of a file: ``mtime_ns`` locally, the ETag on S3."""
    text = check_uri(uri)
    if is_s3(text):
        bucket, key = split_s3(text)
        try:
            head = s3_client().head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise _s3_error(text, exc) from exc
        return ObjectInfo(text, int(head["ContentLength"]), head["ETag"].strip('"'))
    try:
        st = local_path(text).stat()
    except OSError as exc:
        raise StorageError(f"{text}: {exc.strerror or exc}") from exc
    return ObjectInfo(text, st.st_size, str(st.st_mtime_ns))


def list_files(
    uri: str | os.PathLike,
    suffixes: tuple[str, ...] | None = None,
    *,
    skipped: Callable[[ListingSkip], None] | None = None,
) -> Iterator[ObjectInfo]:
    """Every file below ``uri`` (recursive), optionally only those ending in ``suffixes``.

    S3 listings are paginated; local listings are sorted so runs are reproducible. An entry
    that matches ``suffixes`` but is not yielded (hidden, unreadable, not a regular file; see
    :class:`ListingSkip`) is handed to ``skipped``, so a caller can account for every entry;
    without ``skipped``, hidden entries are left out and an unreadable one raises
    :class:`StorageError`.
    """
    text = check_uri(uri)
    wanted = tuple(s.lower() for s in suffixes) if suffixes else None

    def matches(name: str) -> bool:
        return wanted is None or name.lower().endswith(wanted)

    def hidden(rel: str) -> bool:
        # "." and ".." in an S3 key are plain segments of the key, not hidden folders
        return any(part.startswith(".") and part not in (".", "..") for part in rel.split("/"))

    def skip(entry: ListingSkip) -> None:
        if skipped is not None:
            skipped(entry)
        elif entry.reason != reasons.HIDDEN:
            raise StorageError(f"{entry.uri}: {entry.message}")

    if is_s3(text):
        bucket, prefix = split_s3(text)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        paginator = s3_client().get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if key.endswith("/") or not matches(key):
                        continue
                    if hidden(key[len(prefix) :]):
                        skip(ListingSkip(f"s3://{bucket}/{key}", reasons.HIDDEN, HIDDEN_MESSAGE))
                        continue
                    yield ObjectInfo(f"s3://{bucket}/{key}", int(obj["Size"]), obj["ETag"].strip('"'))
        except StorageError:
            raise
        except Exception as exc:
            raise _s3_error(text, exc) from exc
        return
    root = local_path(text)
    if not root.exists():
        raise StorageError(f"{text}: no such directory")
    if root.is_file():
        st = root.stat()
        yield ObjectInfo(str(root), st.st_size, str(st.st_mtime_ns))
        return

    def walk_error(exc: OSError) -> None:
        message = f"folder not listed: {exc.strerror or exc}"
        skip(ListingSkip(str(exc.filename or root), reasons.UNREADABLE, message))

    for dirpath, dirnames, filenames in os.walk(root, onerror=walk_error):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        for name in sorted(filenames):
            if not matches(name):
                continue
            path = Path(dirpath, name)
            if hidden(name if rel_dir == "." else f"{rel_dir}/{name}"):
                skip(ListingSkip(str(path), reasons.HIDDEN, HIDDEN_MESSAGE))
                continue
            try:
                st = path.stat()
            except OSError as exc:
                what = "dangling symlink" if path.is_symlink() else "cannot stat"
                skip(ListingSkip(str(path), reasons.UNREADABLE, f"{what}: {exc.strerror or exc}"))
                continue
            if not stat_mod.S_ISREG(st.st_mode):
                message = "not a regular file (FIFO, socket or device)"
                skip(ListingSkip(str(path), reasons.NOT_A_FILE, message))
                continue
            yield ObjectInfo(str(path), st.st_size, str(st.st_mtime_ns))


def relative_to(uri: str, root: str) -> str:
    """``uri`` relative to ``root`` as a ``/``-separated path (for mirroring a library layout)."""
    if is_s3(uri) and is_s3(root):
        rb, rk = split_s3(root.rstrip("/") + "/")
        ub, uk = split_s3(uri)
        if ub != rb or not uk.startswith(rk):
            raise BadURIError(f"{uri} is not below {root}")
        return uk[len(rk) :]
    # lexical, not resolved: a symlink below the root stays where the listing found it
    path, top = os.path.abspath(local_path(uri)), os.path.abspath(local_path(root))
    if path != top and os.path.commonpath([path, top]) != top:
        raise BadURIError(f"{uri} is not below {root}")
    return Path(os.path.relpath(path, top)).as_posix()


def delete(uri: str | os.PathLike) -> None:
    text = check_uri(uri)
    if is_s3(text):
        bucket, key = split_s3(text)
        try:
            s3_client().delete_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise _s3_error(text, exc) from exc
        return
    with contextlib.suppress(FileNotFoundError):
        local_path(text).unlink()


@contextlib.contextmanager
def local_copy(uri: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A local file with the content of ``uri`` (the file itself when it is local)."""
    text = check_uri(uri)
    if not is_s3(text):
        yield local_path(text)
        return
    with tempfile.TemporaryDirectory(prefix="sc-dl-") as tmp:
        path = Path(tmp) / ("object" + suffix)
        bucket, key = split_s3(text)
        try:
            s3_client().download_file(bucket, key, str(path))
        except Exception as exc:
            raise _s3_error(text, exc) from exc
        yield path
