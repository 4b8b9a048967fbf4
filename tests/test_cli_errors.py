"""The CLI's own errors about what a user gave: one line on stderr, exit status 2, no traceback
(unless -v), and nothing started (Ray) before the check."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from sound_captions.cli import main


@pytest.fixture()
def runner():
    return CliRunner()


def _one_line_exit_2(result, *words):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output + result.stderr
    for word in words:
        assert word in lines[0]


def test_caption_with_a_missing_or_corrupt_bundle(runner, tmp_path):
    (tmp_path / "in").mkdir()
    missing = runner.invoke(main, ["caption", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--model", str(tmp_path / "missing.bundle")])
    _one_line_exit_2(missing, "missing.bundle", "No such file")
    (tmp_path / "bad.bundle").write_bytes(b"not a torch file\n" * 10)
    corrupt = runner.invoke(main, ["caption", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--model", str(tmp_path / "bad.bundle")])
    _one_line_exit_2(corrupt, "bad.bundle", "not a readable model bundle")
    assert not (tmp_path / "out").exists()  # nothing written for a run that never started
    verbose = runner.invoke(main, ["-v", "caption", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--model", str(tmp_path / "bad.bundle")])
    assert verbose.exit_code == 2 and "Traceback" in verbose.stderr


def test_evaluate_with_a_missing_dataset_or_bundle(runner, tmp_path):
    result = runner.invoke(main, ["evaluate", "--model", str(tmp_path / "missing.bundle"), "--data", str(tmp_path / "nowhere")])
    _one_line_exit_2(result, "missing.bundle")


def test_an_unexpected_error_is_not_dressed_up_as_a_user_error():
    from sound_captions.cli import user_errors

    assert not issubclass(RuntimeError, user_errors()) and not issubclass(KeyError, user_errors())
