"""DVC stage `pretrain@<item>` (see dvc.yaml): reads params.yaml, runs `d2v pretrain`."""

import sys

from d2v.cli import main

if __name__ == "__main__":
    main(["pretrain", *sys.argv[1:]])
