"""Stage entry points, one module per `d2v` command: each loads params, does one DVC stage's work
through the library and writes that stage's declared outputs atomically. `d2v.cli` imports a
command's module (its `command(args, argv)`) only when that command runs, so a stage loads only
its own code, and dvc.yaml names exactly that code as the stage's deps."""
