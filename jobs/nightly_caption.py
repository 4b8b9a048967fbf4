"""Ray job: nightly caption from a YAML config (keys = the CLI options of `sound-captions caption`).

    ray job submit --working-dir . -- python jobs/nightly_caption.py --config jobs/configs/local-nightly_caption.yaml
"""

import sys

from sound_captions.jobs import main

if __name__ == "__main__":
    sys.exit(main("nightly_caption"))
