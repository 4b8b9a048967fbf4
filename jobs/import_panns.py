"""Ray job: import a PANNs checkpoint as a model bundle (keys = the options of `sound-captions bundle import-panns`).

    ray job submit --working-dir . -- python jobs/import_panns.py --config jobs/configs/local-import_panns.yaml
"""

import sys

from sound_captions.jobs import main

if __name__ == "__main__":
    sys.exit(main("import_panns"))
