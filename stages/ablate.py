"""DVC stage `ablate@<item>` (see dvc.yaml): reads params.yaml, runs `d2v ablate`."""

from _entry import stage

if __name__ == "__main__":
    stage("ablate")
