"""DVC stage `ablate@<item>` (see dvc.yaml): reads params.yaml, runs `d2v ablate`."""

import sys

from d2v.cli import main

if __name__ == "__main__":
    main(["ablate", *sys.argv[1:]])
