"""DVC stage `prepare@<item>` (see dvc.yaml): reads params.yaml, runs `d2v prepare`."""

from _entry import stage

if __name__ == "__main__":
    stage("prepare")
