"""Ray job: build dataset from a YAML config (keys = the CLI options of `sound-captions dataset build`).

    ray job submit --working-dir . -- python jobs/build_dataset.py --config jobs/configs/local-build_dataset.yaml
"""

import sys

from sound_captions.jobs import main

if __name__ == "__main__":
    sys.exit(main("build_dataset"))
