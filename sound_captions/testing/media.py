"""Generated media for tests: the demo's generator (``sound_captions.generated``), under the
name the tests have always used. Production code imports ``sound_captions.generated``."""

from sound_captions.generated import (  # noqa: F401
    KIND_LABELS,
    KINDS,
    make_corrupt,
    make_media,
    per_second_truth,
    segment_labels,
)
