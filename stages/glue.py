"""DVC stage `glue` (see dvc.yaml): reads params.yaml, runs `d2v glue`."""

from _entry import stage

if __name__ == "__main__":
    stage("glue")
