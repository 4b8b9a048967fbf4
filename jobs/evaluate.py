"""Ray job: evaluate from a YAML config (keys = the CLI options of `sound-captions evaluate`).

    ray job submit --working-dir . -- python jobs/evaluate.py --config jobs/configs/local-evaluate.yaml
"""

import sys

from sound_captions.jobs import main

if __name__ == "__main__":
    sys.exit(main("evaluate"))
