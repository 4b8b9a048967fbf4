"""The whole flow in local Ray: generated corpus → dataset → Ray Train → captions → scores."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import webvtt

from sound_captions.caption.vtt import style_violations
from sound_captions.demo import TEST_VIDEOS, DemoConfig, run_demo


@pytest.mark.ray
@pytest.mark.slow
def test_demo_flow_end_to_end(ray_session, tmp_path):
    lines: list[str] = []
    result = run_demo(DemoConfig(workdir=str(tmp_path), clips_per_kind=8, negatives=4, epochs=10), echo=lines.append)

    # Every clip of the corpus became windows; nothing failed at build time.
    assert result.build.n_failed == 0 and result.build.n_clips == result.build.n_requested
    info = json.loads((tmp_path / "dataset" / "dataset.json").read_text())
    assert set(info["vocabulary"]) == {"/m/02fs_r", "/m/04rlf", "/m/0chx_"}
    # The split is by clip: no clip has windows in two splits.
    splits: dict[str, set[str]] = {}
    for shard in info["shards"]:
        table = pq.read_table(tmp_path / "dataset" / shard, columns=["clip_id", "split"]).to_pylist()
        for row in table:
            splits.setdefault(row["clip_id"], set()).add(row["split"])
    assert all(len(s) == 1 for s in splits.values())

    # Captions: the good videos captioned, the two bad inputs failed with their reasons.
    status = {r.input.rsplit("/videos/", 1)[-1]: (r.status, r.reason) for r in result.caption.results}
    assert status["broken/corrupt.mp4"] == ("failed", "decode_error")
    assert status["broken/no-audio.mp4"] == ("failed", "no_audio")
    for name, _ in TEST_VIDEOS:
        assert status[name + ".mp4"][0] == "captioned"
        text = (tmp_path / "captions" / (name + ".vtt")).read_text()
        assert webvtt.from_string(text).captions, name
        assert style_violations(text) == []
        assert (tmp_path / "captions" / (name + ".scores.parquet")).exists()

    # Per-second agreement with the truth the videos were made from.
    assert result.scores["overall"]["f_measure"] >= 0.85, "\n".join(lines)
    assert any("overall (micro)" in line for line in lines)
