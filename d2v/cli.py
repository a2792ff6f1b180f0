"""The `d2v` command: one subcommand per pipeline stage (the DVC stages call these), plus `params`.

Every expected failure (bad params, bad data, an output that cannot be written, a store that
refuses) ends the command with exit code 2 and a one-line reason naming the param, the file or the
store, before any compute where the params are at fault; `--debug` adds the traceback
(d2v/failures.py). A collapsed run exits 3.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from d2v.collapse import CollapseError
from d2v.config import Modality
from d2v.failures import EXIT_EXPECTED, expected_failure, format_traceback

log = logging.getLogger("d2v")


def _modality(value: str) -> Modality:
    try:
        return Modality(value)
    except ValueError:
        allowed = ", ".join(m.value for m in Modality)
        raise argparse.ArgumentTypeError(f"unknown modality {value!r}: allowed {allowed}") from None


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="tracebacks of expected failures")
    p = argparse.ArgumentParser(prog="d2v", description=__doc__, parents=[common])
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    c = command("params", help="compose conf/ into params.yaml (as `dvc exp run` does)")
    c.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=mini seed=1")
    c.add_argument("--conf", default="conf")
    c.add_argument("--out", default="params.yaml")

    for name, what in (
        ("download", "fetch or generate raw data"),
        ("prepare", "decode raw data into shards"),
        ("pretrain", "data2vec pretraining through DeepSpeed"),
    ):
        c = command(name, help=what)
        c.add_argument("modality", type=_modality)
        c.add_argument("--params", default="params.yaml")
        c.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)
    c = command("bench", help="data2vec vs data2vec 2.0: speed, MFU, time-to-accuracy")
    c.add_argument("modality", type=_modality)
    c.add_argument("--params", default="params.yaml")

    c = command("report", help="comparison report from the MLflow store alone")
    c.add_argument("--params", default="params.yaml", help="for the tracking param, if present")
    c.add_argument("--experiment", default=None, help="MLflow experiment (default: the param)")
    c.add_argument(
        "--filter", default=None, help="MLflow search filter, e.g. \"tags.model='micro'\""
    )
    c.add_argument("--out", default="reports")
    c.add_argument("--compare", nargs="*", default=[], help="run ids to set side by side")
    c.add_argument("--eval-dir", default="metrics/eval", help="for the headline table")
    c.add_argument("--glue", default="metrics/glue.json", help="for the headline's GLUE row")

    c = sub.add_parser(
        "headline", help="pretrained vs scratch per task, with verdicts (ends `make run`)"
    )
    c.add_argument("--eval-dir", default="metrics/eval")
    c.add_argument("--glue", default="metrics/glue.json")
    c.add_argument("--report", default="reports/report.html")

    c = command("glue", help="GLUE table and average from the text tasks' evaluations")
    c.add_argument("--params", default="params.yaml")

    c = command("sweep", help="Optuna study over tau, mask rate and K")
    c.add_argument("modality", type=_modality)
    c.add_argument("--params", default="params.yaml")
    c.add_argument("--storage", default=None, help="SQLAlchemy URL (default: the param)")
    c.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    c.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    c = sub.add_parser("ablate", help="the paper's ablations (top-K, sublayer, norm) as a grid")
    c.add_argument("modality", type=_modality)
    c.add_argument("--params", default="params.yaml")
    c.add_argument("--storage", default=None, help="SQLAlchemy URL (default: the param)")
    c.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    c.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name, what in (
        ("finetune", "fine-tune pretrained and scratch encoders"),
        ("evaluate", "score fine-tuned models and linear probes"),
    ):
        c = command(name, help=what)
        c.add_argument("task")
        c.add_argument("--params", default="params.yaml")
    return p


# Each command's code lives in its own module, imported only when that command runs, so a stage
# process loads only what it uses and its dvc.yaml deps name only that code
# (tests/test_stage_deps.py checks them against these modules' import closure).
COMMANDS = {
    "download": "d2v.runs.download",
    "prepare": "d2v.runs.prepare",
    "pretrain": "d2v.runs.pretrain",
    "finetune": "d2v.runs.finetune",
    "evaluate": "d2v.runs.evaluate",
    "glue": "d2v.runs.glue",
    "sweep": "d2v.runs.sweep",
    "ablate": "d2v.runs.ablate",
    "bench": "d2v.runs.bench",
    "report": "d2v.runs.report",
    "headline": "d2v.runs.headline",
}


def run(args: argparse.Namespace, argv: list[str]) -> None:
    if args.command == "params":
        from d2v.params_io import dump_composed

        dump_composed(args.out, args.conf, args.overrides)
        log.info("wrote %s", args.out)
        return
    importlib.import_module(COMMANDS[args.command]).command(args, argv)


def main(argv: list[str] | None = None) -> None:
    from d2v.logs import setup_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        run(args, argv)
    except CollapseError as e:
        log.error("%s", e)
        raise SystemExit(3) from None
    except Exception as e:
        message = expected_failure(e)
        if message is None:
            raise  # a bug: keep the traceback
        if args.debug:
            log.error("%s", format_traceback(e).rstrip())
        log.error("%s", message)
        raise SystemExit(EXIT_EXPECTED) from None


if __name__ == "__main__":
    main()
