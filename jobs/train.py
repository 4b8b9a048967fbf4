"""Ray job: train from a YAML config (keys = the CLI options of `sound-captions train`).

    ray job submit --working-dir . -- python jobs/train.py --config jobs/configs/local-train.yaml
"""

import sys

from sound_captions.jobs import main

if __name__ == "__main__":
    sys.exit(main("train"))
