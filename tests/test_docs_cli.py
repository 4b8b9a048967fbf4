"""The README's and docs' command lines match the CLI (issue 13): every ``--option`` written
after ``sound-captions <command>`` is an option of that command."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from sound_captions.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _command(words: list[str]) -> tuple[click.Command, list[str]]:
    command, used = main, []
    for word in words:
        if isinstance(command, click.Group) and word in command.commands:
            command, used = command.commands[word], [*used, word]
        else:
            break
    return command, used


def _options(command: click.Command) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *getattr(p, "secondary_opts", ()))}


def _command_lines(text: str):
    for line in text.splitlines():
        for match in re.finditer(r"sound-captions((?:\s+-v+)?(?:\s+--(?:ray-address|num-cpus)\s+\S+)*)\s+([a-z][a-z-]*(?:\s+[a-z][a-z-]*)?)(.*)", line):
            yield match.group(2).split(), match.group(3)


def _wrong(text: str) -> list[str]:
    wrong = []
    for words, rest in _command_lines(text):
        command, used = _command(words)
        if not used or isinstance(command, click.Group):
            continue
        rest = " ".join(words[len(used):]) + " " + rest
        for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest.split("`")[0]):
            if option not in _options(command) and option != "--help":
                wrong.append(f"sound-captions {' '.join(used)} {option}")
    return wrong


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_documented_option_exists(doc):
    assert _wrong(doc.read_text()) == []


def test_the_scan_sees_the_readme_commands():
    seen = {" ".join(_command(words)[1]) for words, _ in _command_lines((ROOT / "README.md").read_text())}
    assert {"caption", "train", "dataset build", "bundle import-panns"} <= seen
    assert _wrong("run `sound-captions -v caption lib/ --model m --feature-kind mel` and `sound-captions train --streaming`") == [
        "sound-captions caption --feature-kind"
    ]
