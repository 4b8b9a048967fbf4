"""Label cleaning (``dataset clean``): out-of-fold predictions → suspicion scores (cleanlab) →
a review page → a cleaned dataset version.

- ``options``: ``CleanConfig``;
- ``folds``: k-fold over clips, each fold a plain ``train`` run; per-second held-out scores;
- ``suspicion``: per clip and label: probably wrong, probably missing, partly absent;
- ``page``: the self-contained review page and its decisions.csv;
- ``review``: the whole examination, writing the review folder;
- ``apply``: decisions → a new dataset version (the original is only read).

The package imports nothing itself: the CLI reads ``options`` without the stages' imports.
"""
