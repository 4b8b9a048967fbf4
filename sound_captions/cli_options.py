"""Command-line options made from the config dataclasses, so that an option's name, type,
default and help are written once: in the dataclass (its field and the ``Attributes:`` section
of its docstring). ``jobs/`` YAML keys are the same names (see ``jobs.py``).

    @options_from(PostprocessConfig)          # --smoothing, --off-ratio, --most-specific/--no-most-specific, ...
    def caption(..., **options):
        PostprocessConfig(**take(PostprocessConfig, options))
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable

import click

_ATTRIBUTE = re.compile(r"^(\s*)([a-z_][a-z0-9_]*(?:\s*/\s*[a-z_][a-z0-9_]*)*):\s*(.*)$")


def field_help(cls: type) -> dict[str, str]:
    """Field name → its text in the class docstring's ``Attributes:`` section (continuation lines
    joined; ``a / b: text`` documents both)."""
    doc = cls.__doc__ or ""
    if "Attributes:" not in doc:
        return {}
    out: dict[str, str] = {}
    names: list[str] = []
    indent = None
    for line in doc.split("Attributes:", 1)[1].splitlines():
        if not line.strip():
            continue
        match = _ATTRIBUTE.match(line)
        if match and (indent is None or len(match.group(1)) <= indent):
            indent = len(match.group(1))
            names = [n.strip() for n in match.group(2).split("/")]
            for name in names:
                out[name] = match.group(3).strip()
        elif names and indent is not None and len(line) - len(line.lstrip()) > indent:
            for name in names:
                out[name] += " " + line.strip()
        else:
            break
    return {k: _sentence(v).replace("``", "") for k, v in out.items()}


def _sentence(text: str) -> str:
    """Help text starting with a capital, except where it starts with a program's own name."""
    return text if text.startswith(("ffmpeg", "yt-dlp", "``")) else text[:1].upper() + text[1:]


def _click_type(hint) -> tuple[object, bool]:
    """A field's type hint → (click type, optional)."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else str
    if typing.get_origin(hint) is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(hint)]), optional
    return {int: int, float: float, str: str, bool: bool}.get(hint, str), optional


def _hints(cls: type) -> dict[str, object]:
    """Field name → resolved type hint; a hint naming a type imported only for type checking
    (a nested config loaded lazily) resolves to ``object``, which no option is made for."""
    try:
        return typing.get_type_hints(cls)
    except NameError:
        module = vars(sys.modules[cls.__module__])
        out: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            try:
                out[f.name] = eval(f.type, module) if isinstance(f.type, str) else f.type  # noqa: S307 - our own annotations
            except NameError:
                out[f.name] = object
        return out


def scalar_fields(cls: type, exclude: Iterable[str] = ()) -> list[dataclasses.Field]:
    """The fields of ``cls`` a command line can set (nested configs and lists excluded)."""
    hints = _hints(cls)
    skip = set(exclude)
    keep = []
    for f in dataclasses.fields(cls):
        if f.name in skip or f.default is dataclasses.MISSING:
            continue
        kind, _ = _click_type(hints[f.name])
        if hints[f.name] is object or dataclasses.is_dataclass(hints[f.name]) or typing.get_origin(hints[f.name]) in (list, dict, tuple):
            continue
        if kind is str and not (isinstance(f.default, str) or f.default is None):
            continue
        keep.append(f)
    return keep


def options_from(cls: type, *, exclude: Iterable[str] = (), aliases: dict[str, str] | None = None) -> Callable:
    """A decorator adding one click option per settable field of ``cls`` (``--field-name``;
    a bool field is ``--x/--no-x``), with the field's default and docstring help.
    ``aliases``: field → an extra, older option name that sets the same value."""
    hints = _hints(cls)
    helps = field_help(cls)
    aliases = aliases or {}

    def decorate(command: Callable) -> Callable:
        for f in reversed(scalar_fields(cls, exclude)):
            name = "--" + f.name.replace("_", "-")
            kind, optional = _click_type(hints[f.name])
            text = helps.get(f.name, "")
            if kind is bool:
                decls = [f"{name}/--no-{name[2:]}", f.name]
                command = click.option(*decls, default=f.default, show_default=True, help=text)(command)
                continue
            decls = [name] + ([aliases[f.name]] if f.name in aliases else []) + [f.name]
            command = click.option(*decls, type=kind, default=f.default, show_default=f.default is not None, help=text)(command)
        return command

    return decorate


def take(cls: type, values: dict, exclude: Iterable[str] = ()) -> dict:
    """Pop from ``values`` the options that ``options_from(cls)`` added → keyword arguments."""
    return {f.name: values.pop(f.name) for f in scalar_fields(cls, exclude) if f.name in values}
