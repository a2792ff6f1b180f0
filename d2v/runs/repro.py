"""`d2v repro [GROUP...]`: `dvc repro` of independent groups of targets, side by side.

`dvc repro` runs one stage at a time, and a micro model's matmuls cannot keep two cores busy from
one process (`d2v.pool`: two one-thread processes step 1.1-1.5x faster than one two-thread
process). So `make run` reproduces the three modality chains, which share no stage, as three
`dvc repro` processes side by side: with no GROUP, one group per modality of params.yaml's
downstream tasks, its `evaluate@<task>` stages (DVC runs their upstream first), plus the `--with`
targets of that modality (`sweep@vision`). Every stage process they start gets cores // groups threads
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
from collections.abc import Mapping, Sequence
from typing import IO

from d2v.config import ConfigError, Params
from d2v.config.base import suggest
from d2v.failures import EXIT_EXPECTED

log = logging.getLogger(__name__)


def thread_share(groups: int, cores: int | None = None) -> int:
    """Threads per stage process when `groups` run side by side on `cores` (default: the cores
    this process may run on)."""
    cores = cores or len(os.sched_getaffinity(0))
    return max(1, cores // max(1, groups))


def parse_groups(specs: Sequence[str]) -> dict[str, list[str]]:
    """`a,b c` -> {"a,b": [a, b], "c": [c]}: one comma-separated list of DVC targets per group."""
    groups = {spec: [t for t in spec.split(",") if t] for spec in specs}
    empty = [spec for spec, targets in groups.items() if not targets]
    if empty:
        raise ConfigError(f"d2v repro: group {empty[0]!r} names no DVC target (give a,b c)")
    return groups


def chain_groups(params: Params, extra: Sequence[str] = ()) -> dict[str, list[str]]:
    """One group per modality that has downstream tasks, by modality: its `evaluate@<task>`
    stages, then each `extra` target whose `@<modality>` suffix names it."""
    groups: dict[str, list[str]] = {}
    for task, cfg in params.finetune.items():
        groups.setdefault(cfg.modality.value, []).append(f"evaluate@{task}")
    for target in extra:
        modality = target.rpartition("@")[2]
        if modality not in groups:
            raise ConfigError(
                f"d2v repro: --with {target!r} must end in @<modality> of a chain: "
                + suggest(modality, list(groups))
            )
        groups[modality].append(target)
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


def run_groups(groups: Mapping[str, Sequence[str]], out: IO[str] | None = None) -> dict[str, int]:
    """Run `dvc repro <group's targets>` (this interpreter's DVC) for every group (name ->
    targets) at once; returns each group's exit code by name."""
    out = out or sys.stdout
    threads = str(thread_share(len(groups)))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    log.info("%d groups side by side, %s thread(s) per stage process", len(groups), threads)
    lock = threading.Lock()
    procs: dict[str, subprocess.Popen] = {}
    relays = []
    try:
        for name, targets in groups.items():
            proc = subprocess.Popen(
                [sys.executable, "-m", "dvc", "--wait-for-lock", "repro", *targets],
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
    """`d2v repro [GROUP...] [--with TARGET...]`."""
    from d2v.params_io import read_params
    from d2v.tracking import Tracker

    groups = parse_groups(args.groups) if args.groups else None
    params = read_params(args.params)
    groups = groups or chain_groups(params, args.extra)
    for name, targets in groups.items():
        log.info("group %s: dvc repro %s", name, " ".join(targets))
    # the tracking store is created once here, before the groups' first stages race to create it
    Tracker(params.tracking)
    codes = run_groups(groups)
    failed = [name for name, code in codes.items() if code]
    if failed:
        name = failed[0]
        log.error(
            "group %s failed: dvc repro %s exited %d (its lines above start [%s]); the other"
            " groups' results are kept, a re-run resumes",
            name,
            " ".join(groups[name]),
            codes[name],
            name,
        )
        sys.exit(EXIT_EXPECTED)
