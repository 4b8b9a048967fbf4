"""URIs: local paths, file:// and a real S3 API (moto server); atomic writes; listings."""

from __future__ import annotations

import os

import pytest

from sound_captions import storage


def test_local_roundtrip_is_atomic_and_leaves_no_temporaries(tmp_path):
    uri = str(tmp_path / "a" / "b.bin")
    storage.write_bytes(uri, b"hello")
    storage.write_bytes(uri, b"world")
    assert storage.read_bytes(uri) == b"world"
    assert storage.read_bytes("file://" + uri) == b"world"
    assert os.listdir(tmp_path / "a") == ["b.bin"]
    info = storage.stat(uri)
    assert info.size_bytes == 5 and info.version


def test_local_listing_is_recursive_sorted_and_filtered(tmp_path):
    for rel in ("x/2.mp4", "x/1.MP4", "y/z/3.mkv", "y/notes.txt", ".hidden/4.mp4"):
        storage.write_bytes(str(tmp_path / rel), b"1")
    found = [os.path.relpath(o.uri, tmp_path) for o in storage.list_files(str(tmp_path), suffixes=(".mp4", ".mkv"))]
    assert found == ["x/1.MP4", "x/2.mp4", "y/z/3.mkv"]
    assert storage.relative_to(str(tmp_path / "y/z/3.mkv"), str(tmp_path)) == "y/z/3.mkv"


def test_errors_name_the_uri(tmp_path):
    with pytest.raises(storage.StorageError, match="nope"):
        storage.read_bytes(str(tmp_path / "nope"))
    with pytest.raises(storage.BadURIError):
        storage.check_uri("ftp://host/file")
    with pytest.raises(storage.BadURIError):
        storage.split_s3("s3:///key-without-bucket")
    assert storage.join("s3://bkt/a/", "b", "c.txt") == "s3://bkt/a/b/c.txt"


@pytest.mark.network
def test_s3_roundtrip_listing_and_stat(s3_bucket, tmp_path):
    root = f"s3://{s3_bucket}/lib"
    storage.write_text(storage.join(root, "a/one.mp4"), "1")
    local = tmp_path / "two.mp4"
    local.write_bytes(b"22")
    storage.upload_file(local, storage.join(root, "b/two.mp4"))
    storage.write_text(storage.join(root, "b/readme.txt"), "x")
    assert storage.exists(storage.join(root, "a/one.mp4"))
    assert not storage.exists(storage.join(root, "a/none.mp4"))
    listed = [o.uri for o in storage.list_files(root, suffixes=(".mp4",))]
    assert listed == [f"{root}/a/one.mp4", f"{root}/b/two.mp4"]
    info = storage.stat(f"{root}/b/two.mp4")
    assert info.size_bytes == 2 and info.version
    assert storage.relative_to(f"{root}/b/two.mp4", root) == "b/two.mp4"
    with storage.local_copy(f"{root}/b/two.mp4", suffix=".mp4") as path:
        assert path.read_bytes() == b"22"
    with pytest.raises(storage.StorageError, match="no such object"):
        storage.read_bytes(f"{root}/missing")


@pytest.mark.network
def test_s3_listing_paginates(s3_bucket):
    client = storage.s3_client()
    for i in range(1005):  # more than one page of 1000 keys
        client.put_object(Bucket=s3_bucket, Key=f"many/{i:05d}.wav", Body=b"")
    assert sum(1 for _ in storage.list_files(f"s3://{s3_bucket}/many", suffixes=(".wav",))) == 1005
