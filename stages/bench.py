"""DVC stage `bench@<item>` (see dvc.yaml): reads params.yaml, runs `d2v bench`."""

from _entry import stage

if __name__ == "__main__":
    stage("bench")
