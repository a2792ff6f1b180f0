"""DVC stage `finetune@<item>` (see dvc.yaml): reads params.yaml, runs `d2v finetune`."""

import sys

from d2v.cli import main

if __name__ == "__main__":
    main(["finetune", *sys.argv[1:]])
