"""Label cleaning (``dataset clean``): out-of-fold predictions → suspicion scores (cleanlab) →
a review page → a cleaned dataset version.

- ``folds``: k-fold over clips, each fold a plain ``train`` run; per-second held-out scores;
- ``suspicion``: per clip and label: probably wrong, probably missing, partly absent;
- ``page``: the self-contained review page and its decisions.csv;
- ``review``: the whole examination, writing the review folder;
- ``apply``: decisions → a new dataset version (the original is only read).
"""

from sound_captions.clean.apply import DecisionsError, apply_decisions
from sound_captions.clean.folds import CleanConfig
from sound_captions.clean.review import CleanReport, clean_dataset
from sound_captions.clean.suspicion import CleanlabMissingError

__all__ = ["CleanConfig", "CleanReport", "CleanlabMissingError", "DecisionsError", "apply_decisions", "clean_dataset"]
