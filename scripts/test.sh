#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, then run it.
#   - a virtual environment in .venv with the project and its test extras (torch 2.11 + torchaudio 2.11),
#     and one in .venv-clap with the clap and clean extras (msclap needs numpy < 2);
#   - Debian's Chromium for the browser tests (apt-get; needs root or sudo);
#   - a single-node Slurm (slurmctld + slurmd + munge) for the Slurm tests, when the script exists.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m "not slow"`).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
# The clap extra pins numpy < 2 (msclap), unlike the default install: its tests
# (tests/test_clean_clap.py) run their checks in a venv of its own, made here.
if [ ! -x .venv-clap/bin/python ]; then
  "$PYTHON" -m venv .venv-clap
fi
.venv-clap/bin/python -m pip install -q -e '.[clap,clean]'

bash .ci/install-browser.sh
if [ -f .ci/start-slurm.sh ]; then
  bash .ci/start-slurm.sh
  export SOUND_CAPTIONS_SLURM=1
fi

mkdir -p artifacts
exec .venv/bin/python -m pytest "$@"
