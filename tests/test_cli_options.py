"""The CLI's ``caption`` and ``train`` options are made from the config dataclasses (issue 13):
every settable field is an option of the same name with the field's default and docstring help,
a job YAML key of the same name reaches the same field, and the old ``--batch-size`` of
``caption`` still sets ``inference_batch_size``."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from sound_captions import cli, jobs
from sound_captions.caption.options import CaptionOptions
from sound_captions.caption.postprocess import PostprocessConfig
from sound_captions.caption.report import CaptionRun
from sound_captions.cli_options import field_help, scalar_fields
from sound_captions.dataset.options import BuildOptions
from sound_captions.download.options import DownloadOptions
from sound_captions.train.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class _Example:
    """An example.

    Attributes:
        size: how big, in
            two lines.
        left / right: the margins.
        name: a ``name``.

    Returns nothing.
    """

    size: int = 3
    left: float = 0.5
    right: float = 0.5
    name: str | None = None


def test_field_help_reads_the_attributes_section():
    assert field_help(_Example) == {"size": "How big, in two lines.", "left": "The margins.", "right": "The margins.", "name": "A name."}
    assert field_help(BuildOptions)["ffmpeg"].startswith("ffmpeg binary")  # a program's name keeps its case


def _help(*words: str) -> str:
    result = CliRunner().invoke(cli.main, [*words, "--help"], terminal_width=400)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


@pytest.mark.parametrize(
    ("words", "configs", "own", "absent"),
    [
        (["caption"], [CaptionOptions, PostprocessConfig], cli._CAPTION_OWN, ()),
        (["train"], [TrainConfig], cli._TRAIN_OWN, ()),
        (["dataset", "build"], [BuildOptions, DownloadOptions], ("seed",), ("ffmpeg_location",)),  # --ffmpeg sets both
    ],
)
def test_every_settable_field_is_an_option_with_its_default_and_help(words, configs, own, absent):
    text = _help(*words)
    command = cli.main
    for word in words:
        command = command.commands[word]
    params = {p.name: p for p in command.params}
    for config in configs:
        helps = field_help(config)
        for f in scalar_fields(config, exclude=absent):
            option = "--" + f.name.replace("_", "-")
            assert option in text and f.name in params, (config.__name__, f.name)
            if f.name not in own:  # the generated ones: default and help written once, in the dataclass
                assert helps.get(f.name), f"{config.__name__}.{f.name} has no help in its docstring"
                assert (params[f.name].default, params[f.name].help) == (f.default, helps[f.name]), f.name
                assert " ".join(helps[f.name].split())[:30] in text, f.name


@pytest.fixture
def captured(monkeypatch):
    """Runs ``caption`` and ``train`` without Ray or a model: the options they were given."""
    from sound_captions.caption import pipeline
    from sound_captions.train import run

    seen: dict = {}
    cli.user_errors()  # imports the modules that bind load_bundle before it is replaced here
    monkeypatch.setattr(cli, "_start_ray", lambda ctx: None)
    monkeypatch.setattr("sound_captions.bundle.load_bundle", lambda uri: None)

    def fake_caption(inputs, options, progress=None):
        seen["caption"] = options
        return CaptionRun(results=[], wall_s=0.0, report_uri="")

    class _Bundle:
        metrics = {"best_valid_map": 0.5}

    def fake_train(cfg, progress=None, **kw):
        seen["train"] = cfg
        return _Bundle()

    monkeypatch.setattr(pipeline, "caption_library", fake_caption)
    monkeypatch.setattr(run, "train", fake_train)
    return seen


def test_caption_options_reach_caption_options_and_postprocess_config(captured):
    args = [
        "caption", "lib/", "--model", "m.bundle", "--out", "out/", "--batch-size", "99", "--max-cue-s", "3",
        "--no-most-specific", "--smoothing", "viterbi", "--switch-penalty", "4.5", "--max-block-mb", "8", "--cpu-forward-batch", "16",
    ]  # fmt: skip
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    options = captured["caption"]
    assert (options.inference_batch_size, options.max_block_mb, options.cpu_forward_batch, options.out) == (99, 8, 16, "out/")
    assert options.postprocess == PostprocessConfig(smoothing="viterbi", switch_penalty=4.5, max_cue_s=3, most_specific=False)
    result = CliRunner().invoke(cli.main, ["caption", "lib/", "--model", "m", "--out", "o", "--max-cue-s", "x"])
    assert result.exit_code == 2 and "--max-cue-s" in result.output
    for bad, said in ((["--cpu-forward-batch", "0"], "cpu_forward_batch must be at least 1"), (["--min-event-s", "4", "--max-cue-s", "3"], "min_event_s")):
        captured.pop("caption", None)
        result = CliRunner().invoke(cli.main, ["caption", "lib/", "--model", "m", "--out", "o", *bad])
        assert result.exit_code == 2 and said in result.output and "Traceback" not in result.output, result.output
        assert "caption" not in captured  # nothing ran


def test_a_job_config_key_sets_the_field_of_the_same_name(captured):
    config = {
        "inputs": ["lib/"], "model": "m.bundle", "out": "out/", "max_simultaneous": 1, "most_specific": False,
        "inference_batch_size": 64, "off_ratio": 0.5,
    }  # fmt: skip
    result = CliRunner().invoke(cli.main, jobs.config_to_args("caption", config))
    assert result.exit_code == 0, result.output
    options = captured["caption"]
    assert options.inference_batch_size == 64
    assert options.postprocess == PostprocessConfig(max_simultaneous=1, most_specific=False, off_ratio=0.5)

    train = {"data": "ds/", "out": "run/", "gate_dbfs": -40.0, "threshold_min_positives": 3, "in_memory": False, "epochs": 2}
    result = CliRunner().invoke(cli.main, jobs.config_to_args("train", train))
    assert result.exit_code == 0, result.output
    cfg = captured["train"]
    assert (cfg.gate_dbfs, cfg.threshold_min_positives, cfg.in_memory, cfg.epochs) == (-40.0, 3, False, 2)
    assert dataclasses.replace(cfg, gate_dbfs=None, threshold_min_positives=5, in_memory=True, epochs=10) == TrainConfig(data="ds/", out="run/")

