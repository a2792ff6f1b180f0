"""DVC stage `evaluate@<item>` (see dvc.yaml): reads params.yaml, runs `d2v evaluate`."""

from _entry import stage

if __name__ == "__main__":
    stage("evaluate")
