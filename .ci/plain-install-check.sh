#!/usr/bin/env bash
# The main flow in a virtual environment made with `pip install -e .` ONLY (no test extras), as a
# new user installs it: a dataset of at least two shards, one short epoch of training, captions of
# two short videos, `dataset stats`, `dataset preview` and `evaluate --out`. Fails on any non-zero
# exit status and on any Python traceback in what the commands print, so that a module the test
# extras bring (and the runtime dependencies do not) cannot hide behind the test venv again.
#
# Usage: bash .ci/plain-install-check.sh [VENV_DIR]   (default: .venv-plain; reuses pip's cache)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${1:-.venv-plain}"
PYTHON="${PYTHON:-python3}"
start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e .
echo "plain-install-check: installed in $(( $(date +%s) - start )) s"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/plain-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
LOG="$WORK/log.txt"
SC="$VENV/bin/sound-captions"
# The CLI starts its own local Ray; keep it small on a 2-core machine.
export RAY_DEDUP_LOGS=0

run() {
  echo "+ sound-captions $*" | tee -a "$LOG"
  local rc=0
  "$SC" --num-cpus 4 "$@" >"$WORK/out.txt" 2>&1 || rc=$?
  cat "$WORK/out.txt" >>"$LOG"
  if [ "$rc" -ne 0 ] || grep -q "Traceback (most recent call last)" "$WORK/out.txt"; then
    tail -n 60 "$WORK/out.txt"
    echo "plain-install-check: FAILED (exit $rc): sound-captions $*" >&2
    exit 1
  fi
  tail -n 3 "$WORK/out.txt"
}

# Generated media with the package's own helpers (ffmpeg lavfi; nothing is downloaded).
"$VENV/bin/python" - "$WORK" <<'PY'
import sys
from sound_captions import storage
from sound_captions.demo import DemoConfig, make_corpus
from sound_captions.generated import make_media

work = sys.argv[1]
make_corpus(storage.join(work, "corpus"), DemoConfig(workdir=work, clips_per_kind=4, clip_seconds=3, negatives=2))
make_media(storage.join(work, "library", "a.mp4"), [("beep", 3), ("silence", 2), ("music", 3)], seed=1)
make_media(storage.join(work, "library", "sub", "b.mp4"), [("noise", 3), ("beep", 2)], seed=2)
PY

# 0.25 MB shards hold 31 windows of 64x64 float16: the corpus' ~100 windows make several shards.
run dataset build --manifest "$WORK/corpus/manifest.csv" --out "$WORK/ds" --shard-mb 0.25
shards=$(find "$WORK/ds/shards" -name 'part-*.parquet' | wc -l)
if [ "$shards" -lt 2 ]; then
  echo "plain-install-check: FAILED: the dataset has $shards shard(s); the check needs at least 2" >&2
  exit 1
fi
echo "dataset: $shards shards"
run dataset stats "$WORK/ds"
run dataset preview "$WORK/ds" --out "$WORK/grid.png"
test -s "$WORK/grid.png"
run train --data "$WORK/ds" --out "$WORK/run" --epochs 1 --batch-size 16
grep -q "^epoch 1/1  train loss" "$WORK/out.txt" || { echo "plain-install-check: FAILED: train printed no epoch line" >&2; exit 1; }
run caption "$WORK/library" --model "$WORK/run/model.bundle" --out "$WORK/captions"
test -s "$WORK/captions/a.vtt" && test -s "$WORK/captions/sub/b.vtt"

# Bad input, as a user meets it (issue 13): a dangling symlink in the library is one failed
# entry (exit 1, the others captioned); a missing bundle is one line and exit status 2.
ln -s "$WORK/nowhere.mp4" "$WORK/library/dangling.mp4"
rc=0
"$SC" --num-cpus 4 caption "$WORK/library" --model "$WORK/run/model.bundle" --out "$WORK/captions2" >"$WORK/out.txt" 2>&1 || rc=$?
if [ "$rc" -ne 1 ] || grep -q "Traceback" "$WORK/out.txt" || ! grep -q "dangling.mp4: unreadable" "$WORK/captions2/_report/summary.txt" \
   || ! test -s "$WORK/captions2/a.vtt" || ! test -s "$WORK/captions2/sub/b.vtt"; then
  cat "$WORK/out.txt"; echo "plain-install-check: FAILED: a dangling symlink (exit $rc)" >&2; exit 1
fi
rm "$WORK/library/dangling.mp4"
rc=0
"$SC" caption "$WORK/library" --model "$WORK/missing.bundle" --out "$WORK/captions3" >"$WORK/out.txt" 2>&1 || rc=$?
if [ "$rc" -ne 2 ] || [ "$(grep -c . "$WORK/out.txt")" -ne 1 ] || ! grep -q "^error: .*missing.bundle" "$WORK/out.txt"; then
  cat "$WORK/out.txt"; echo "plain-install-check: FAILED: a missing bundle (exit $rc)" >&2; exit 1
fi
echo "bad input: a dangling symlink fails alone (exit 1); a missing bundle is one line (exit 2)"
run evaluate --model "$WORK/run/model.bundle" --data "$WORK/ds" --split all --out "$WORK/eval"
ls "$WORK"/eval/*.png >/dev/null
# dataset clean: scoring needs the [clean] extra (cleanlab is AGPL-3.0) and says so on one line,
# before any model is trained; --apply (a new dataset version) needs only the default install.
rc=0
"$SC" dataset clean "$WORK/ds" --out "$WORK/review" >"$WORK/out.txt" 2>&1 || rc=$?
if [ "$rc" -ne 1 ] || grep -q "Traceback" "$WORK/out.txt" || ! grep -q "pip install 'sound-captions\[clean\]'" "$WORK/out.txt" || [ -e "$WORK/review" ]; then
  cat "$WORK/out.txt"; echo "plain-install-check: FAILED: dataset clean without the clean extra (exit $rc)" >&2; exit 1
fi
clip=$("$VENV/bin/python" -c "import sys; from sound_captions.clean.folds import clip_label_sets; print(sorted(clip_label_sets(sys.argv[1], ('train', 'valid', 'test')))[0])" "$WORK/ds")
printf 'clip_id,decision\n%s,drop\n' "$clip" >"$WORK/decisions.csv"
run dataset clean "$WORK/ds" --apply "$WORK/decisions.csv" --out "$WORK/ds-cleaned"
grep -q "^clips dropped: 1, relabelled: 0" "$WORK/out.txt" || { echo "plain-install-check: FAILED: dataset clean --apply" >&2; exit 1; }
echo "plain-install-check: passed in $(( $(date +%s) - start )) s"
