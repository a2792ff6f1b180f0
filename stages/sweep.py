"""DVC stage `sweep@<item>` (see dvc.yaml): reads params.yaml, runs `d2v sweep`."""

import sys

from d2v.cli import main

if __name__ == "__main__":
    main(["sweep", *sys.argv[1:]])
