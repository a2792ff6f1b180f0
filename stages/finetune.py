"""DVC stage `finetune@<item>` (see dvc.yaml): reads params.yaml, runs `d2v finetune`."""

from _entry import stage

if __name__ == "__main__":
    stage("finetune")
