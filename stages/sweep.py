"""DVC stage `sweep@<item>` (see dvc.yaml): reads params.yaml, runs `d2v sweep`."""

from _entry import stage

if __name__ == "__main__":
    stage("sweep")
