"""DVC stage `report` (see dvc.yaml): builds reports/ from the MLflow store, runs `d2v report`."""

from _entry import stage

if __name__ == "__main__":
    stage("report")
