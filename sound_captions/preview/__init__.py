"""Preview pages: watch a video with its sound captions and a per-second timeline of the scores.

``write_preview`` makes one page per video; ``write_run_index`` lists every video of a caption
run; ``write_run_previews`` does both for a caption run's output folder.
"""

from sound_captions.preview.index import write_run_index, write_run_previews
from sound_captions.preview.media import PreviewMediaError
from sound_captions.preview.page import write_preview
from sound_captions.preview.timeline import PreviewInputError

__all__ = [
    "PreviewInputError",
    "PreviewMediaError",
    "write_preview",
    "write_run_index",
    "write_run_previews",
]
