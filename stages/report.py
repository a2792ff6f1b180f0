"""DVC stage `report` (see dvc.yaml): builds reports/ from the MLflow store, runs `d2v report`."""

import sys

from d2v.cli import main

if __name__ == "__main__":
    main(["report", *sys.argv[1:]])
