"""Ray job entry points: a YAML config → the same CLI command a person would type.

``jobs/<name>.py --config FILE.yaml`` (what ``ray job submit`` runs) loads the YAML, turns each
key into the CLI option of the same name (``max_cue_s: 5`` → ``--max-cue-s 5``; lists
repeat the option; ``true`` gives a bare flag; ``inputs`` become positional arguments) and calls
the CLI. So a config file accepts exactly the CLI's options, and the two never drift apart.

A config may hold a ``smoke_test:`` mapping whose keys override the others when the job is
started with ``--smoke-test`` (a few items, one epoch), for checking a cluster before a real run.

Ray: the CLI joins the cluster in ``RAY_ADDRESS`` (set by ``ray job submit`` and by the Slurm
and KubeRay launchers) and starts a local one when there is none.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import yaml

from sound_captions import storage

# job name → CLI command words
JOBS: dict[str, list[str]] = {
    "build_dataset": ["dataset", "build"],
    "train": ["train"],
    "evaluate": ["evaluate"],
    "clean_dataset": ["dataset", "clean"],
    "caption": ["caption"],
    "nightly_caption": ["caption"],
    "import_panns": ["bundle", "import-panns"],
}
# job name → config keys that are the command's positional arguments
POSITIONAL_KEYS: dict[str, set[str]] = {
    "caption": {"inputs"}, "nightly_caption": {"inputs"}, "import_panns": {"checkpoint"}, "clean_dataset": {"data"},
}
GLOBAL_KEYS = ("ray_address", "num_cpus", "verbose")


class JobConfigError(ValueError):
    """A job config that is not a mapping of CLI options."""


def load_config(uri: str, *, smoke_test: bool = False) -> dict:
    data = yaml.safe_load(storage.read_text(uri)) or {}
    if not isinstance(data, dict):
        raise JobConfigError(f"{uri}: a job config is a mapping of option names to values")
    smoke = data.pop("smoke_test", None) or {}
    if smoke_test:
        if not isinstance(smoke, dict):
            raise JobConfigError(f"{uri}: smoke_test must be a mapping")
        data.update(smoke)
    return data


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def _negative_flags(words: list[str]) -> dict[str, str]:
    """Option name → its ``--no-x`` form, for the boolean ``--x/--no-x`` options of a command."""
    from sound_captions.cli import main as cli

    command = cli
    for word in words:
        command = command.commands[word]
    out = {}
    for param in command.params:
        secondary = getattr(param, "secondary_opts", None)
        if secondary:
            out[param.name] = secondary[0]
    return out


def config_to_args(job: str, config: dict) -> list[str]:
    """The CLI argument list equivalent to a job config."""
    if job not in JOBS:
        raise JobConfigError(f"unknown job {job!r}; jobs: {', '.join(JOBS)}")
    negatives = _negative_flags(JOBS[job])
    args: list[str] = []
    for key in GLOBAL_KEYS:  # options of the top-level group come before the command
        value = config.get(key)
        if key == "verbose" and value:
            args.append("-" + "v" * int(value))
        elif value not in (None, False) and key != "verbose":
            args += [_option(key), str(value)]
    args += JOBS[job]
    positional: list[str] = []
    for key, value in config.items():
        if key in GLOBAL_KEYS or value is None:
            continue
        if key in POSITIONAL_KEYS.get(job, ()):
            positional += [str(v) for v in (value if isinstance(value, list) else [value])]
        elif isinstance(value, bool):
            if value:
                args.append(_option(key))
            elif key in negatives:  # `in_memory: false` → --streaming (the off form of an on/off option)
                args.append(negatives[key])
        elif isinstance(value, list):
            for item in value:
                args += [_option(key), str(item)]
        elif isinstance(value, dict):
            import json

            args += [_option(key), json.dumps(value)]
        else:
            args += [_option(key), str(value)]
    return args + positional


def main(job: str, argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"jobs/{job}.py", description=f"Run the '{job}' job from a YAML config.")
    parser.add_argument("--config", required=True, help="YAML file (local or s3://) whose keys are the CLI options.")
    parser.add_argument("--smoke-test", action="store_true", help="Apply the config's smoke_test overrides.")
    parser.add_argument("--print-args", action="store_true", help="Print the CLI arguments and exit.")
    ns = parser.parse_args(argv)
    args = config_to_args(job, load_config(ns.config, smoke_test=ns.smoke_test))
    if ns.print_args:
        print(" ".join(args))
        return 0
    from sound_captions.cli import main as cli

    try:
        cli.main(args=args, prog_name="sound-captions", standalone_mode=False)
    except SystemExit as exc:  # the CLI's own exit codes (1: some input failed)
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
