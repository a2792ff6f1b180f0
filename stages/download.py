"""DVC stage `download@<item>` (see dvc.yaml): reads params.yaml, runs `d2v download`."""

from _entry import stage

if __name__ == "__main__":
    stage("download")
