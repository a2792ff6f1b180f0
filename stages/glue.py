"""DVC stage `glue` (see dvc.yaml): reads params.yaml, runs `d2v glue`."""

from d2v.cli import main

if __name__ == "__main__":
    main(["glue"])
