"""DVC stage `bench@<item>` (see dvc.yaml): reads params.yaml, runs `d2v bench`."""

import sys

from d2v.cli import main

if __name__ == "__main__":
    main(["bench", *sys.argv[1:]])
