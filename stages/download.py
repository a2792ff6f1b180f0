"""DVC stage `download@<item>` (see dvc.yaml): reads params.yaml, runs `d2v download`."""

import sys

from d2v.cli import main

if __name__ == "__main__":
    main(["download", *sys.argv[1:]])
