"""DVC stage `prepare@<item>` (see dvc.yaml): reads params.yaml, runs `d2v prepare`."""

import sys

from d2v.cli import main

if __name__ == "__main__":
    main(["prepare", *sys.argv[1:]])
