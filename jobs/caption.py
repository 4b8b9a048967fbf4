"""Ray job: caption from a YAML config (keys = the CLI options of `sound-captions caption`).

    ray job submit --working-dir . -- python jobs/caption.py --config jobs/configs/local-caption.yaml
"""

import sys

from sound_captions.jobs import main

if __name__ == "__main__":
    sys.exit(main("caption"))
