"""Ray job: examine a dataset's labels (review page, suspicions.csv), or with ``apply`` write a
cleaned version, from a YAML config (keys = the CLI options of `sound-captions dataset clean`;
``data`` is the dataset).

    ray job submit --working-dir . -- python jobs/clean_dataset.py --config jobs/configs/local-clean_dataset.yaml
"""

import sys

from sound_captions.jobs import main

if __name__ == "__main__":
    sys.exit(main("clean_dataset"))
