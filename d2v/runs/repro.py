"""`d2v repro GROUP...`: `dvc repro` of independent groups of targets, side by side.

`dvc repro` runs one stage at a time, and a micro model's matmuls cannot keep two cores busy from
one process (`d2v.pool`: two one-thread processes step 1.1-1.5x faster than one two-thread
process). So `make run` reproduces the three modality chains, which share no stage, as three
`dvc repro` processes side by side. Every stage process they start gets cores // groups threads
(at least one) and the OS shares the cores among whichever are running.

DVC releases its repository lock while a stage's command runs and takes it back for its own
bookkeeping (status, dvc.lock); `--wait-for-lock` makes each process wait out the others' instead
of failing. Stages of different groups must not share an output: DVC's per-path locks would stop
the second one.

Each group's output comes through line by line, prefixed with the group's name; a progress bar
shows as its last state. A group that fails leaves the others to finish (what they computed stays
in DVC's cache and a re-run skips it); the command then ends with one line naming the group.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO

from d2v.config import ConfigError
from d2v.failures import EXIT_EXPECTED

log = logging.getLogger(__name__)


def thread_share(groups: int, cores: int | None = None) -> int:
    """Threads per stage process when `groups` run side by side on `cores` (default: the cores
    this process may run on)."""
    cores = cores or len(os.sched_getaffinity(0))
    return max(1, cores // max(1, groups))


def parse_groups(specs: Sequence[str]) -> list[list[str]]:
    """`a,b c` -> [[a, b], [c]]: one comma-separated list of DVC targets per group."""
    groups = [[t for t in spec.split(",") if t] for spec in specs]
    empty = [s for s, g in zip(specs, groups, strict=True) if not g]
    if empty:
        raise ConfigError(f"d2v repro: group {empty[0]!r} names no DVC target (give a,b c)")
    return groups


def _relay(name: str, stream: IO[bytes], out: IO[str], lock: threading.Lock) -> None:
    """Copy `stream` to `out` a line at a time as `[name] line`; of a line that a progress bar
    redrew with carriage returns, only its last state."""
    for raw in stream:
        line = raw.decode(errors="replace").rstrip("\r\n").split("\r")[-1]
        if line.strip():
            with lock:
                out.write(f"[{name}] {line}\n")
                out.flush()


def run_groups(
    groups: Sequence[Sequence[str]], dvc: Sequence[str] | None = None, out: IO[str] | None = None
) -> dict[str, int]:
    """Run `dvc repro <group's targets>` for every group at once; returns each group's exit
    code by name (its targets joined by commas)."""
    dvc = list(dvc or [sys.executable, "-m", "dvc"])
    out = out or sys.stdout
    threads = str(thread_share(len(groups)))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    log.info("%d groups side by side, %s thread(s) per stage process", len(groups), threads)
    lock = threading.Lock()
    procs: dict[str, subprocess.Popen] = {}
    relays = []
    try:
        for group in groups:
            name = ",".join(group)
            proc = subprocess.Popen(
                [*dvc, "--wait-for-lock", "repro", *group],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
            )
            procs[name] = proc
            relay = threading.Thread(target=_relay, args=(name, proc.stdout, out, lock))
            relay.start()
            relays.append(relay)
        codes = {name: proc.wait() for name, proc in procs.items()}
    finally:
        for proc in procs.values():  # interrupted: stop the others too
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            proc.wait()
        for relay in relays:
            relay.join()
    return codes


def command(args: argparse.Namespace, argv: list[str]) -> None:
    """`d2v repro GROUP...`."""
    from d2v.params_io import read_params
    from d2v.tracking import Tracker

    groups = parse_groups(args.groups)
    # the tracking store is created once here, before the groups' first stages race to create it
    Tracker(read_params(args.params).tracking)
    codes = run_groups(groups)
    failed = [name for name, code in codes.items() if code]
    if failed:
        log.error(
            "dvc repro %s failed (exit %d; its lines above are prefixed [%s]); the other groups'"
            " results are kept: re-run to resume",
            failed[0],
            codes[failed[0]],
            failed[0],
        )
        sys.exit(EXIT_EXPECTED)
