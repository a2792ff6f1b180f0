"""DVC stage `evaluate@<item>` (see dvc.yaml): reads params.yaml, runs `d2v evaluate`."""

import sys

from d2v.cli import main

if __name__ == "__main__":
    main(["evaluate", *sys.argv[1:]])
