"""DVC stage `pretrain@<item>` (see dvc.yaml): reads params.yaml, runs `d2v pretrain`."""

from _entry import stage

if __name__ == "__main__":
    stage("pretrain")
