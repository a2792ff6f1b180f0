"""Stage entry points: each loads params, does one DVC stage's work through the library and
writes that stage's declared outputs atomically. `stages/*.py` and the `d2v` CLI call these."""
