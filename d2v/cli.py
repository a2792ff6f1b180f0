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
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from d2v.collapse import CollapseError
from d2v.config import Modality
from d2v.config.base import suggest
from d2v.failures import EXIT_EXPECTED, expected_failure, format_traceback

log = logging.getLogger("d2v")


def _modality(value: str) -> Modality:
    try:
        return Modality(value)
    except ValueError:
        names = [m.value for m in Modality]
        raise argparse.ArgumentTypeError(
            f"unknown modality {value!r}: {suggest(value, names)}"
        ) from None


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (exit 2), with the closest names after a
    mistyped subcommand or modality, and whose `d2v --help` lists the modalities, tasks and
    config groups of the current directory's params.yaml and conf/ (read only for help)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        typo = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if typo:
            word, choices = typo.group(1), re.findall(r"'([^']*)'", typo.group(2))
            message = f"unknown command {word!r}: {suggest(word, choices)}"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")  # one line

    def format_help(self) -> str:
        if self.prog == "d2v":
            self.epilog = catalog(Path("params.yaml"), Path("conf"))
        return super().format_help()


def catalog(params: Path, conf: Path) -> str:
    """What `d2v --help` lists after the commands: modalities, tasks (params.yaml's finetune
    keys, or conf/config.yaml's) and config groups with their options."""
    import yaml

    from d2v.params_io import group_options

    lines = ["modalities: " + ", ".join(m.value for m in Modality)]
    source = params if params.is_file() else conf / "config.yaml"
    try:
        tasks = (yaml.safe_load(source.read_text()) or {}).get("finetune") or {}
        by_task = [f"{t} ({c.get('modality', '?')})" for t, c in tasks.items()]
        lines.append(f"tasks (finetune / evaluate, from {source}): " + ", ".join(by_task))
    except (OSError, yaml.YAMLError, AttributeError):
        lines.append("tasks: the keys of params.yaml's finetune (no params.yaml here)")
    groups = group_options(conf) if conf.is_dir() else {}
    if groups:
        lines.append(f"config groups in {conf}/ (d2v params GROUP=OPTION, dvc exp run -S ...):")
        lines += [f"  {g}: {', '.join(options)}" for g, options in groups.items()]
    else:
        lines.append("config groups: run in the repository root to list conf/'s groups")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="tracebacks of expected failures")
    p = Parser(
        prog="d2v",
        description=__doc__,
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    _pipeline_commands(command, sub)
    _report_commands(command, sub)
    _study_commands(command, sub)
    _model_commands(command, sub)
    return p


def _pipeline_commands(command: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    """The pipeline's data and training commands: params, download, prepare, pretrain, bench."""
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
    c = command("repro", help="dvc repro of independent target groups side by side (make run)")
    c.add_argument(
        "groups",
        nargs="*",
        help="comma-separated DVC targets per group (default: one per modality)",
    )
    c.add_argument(
        "--with",
        dest="extra",
        nargs="*",
        default=[],
        help="targets added to their modality's group",
    )
    c.add_argument("--params", default="params.yaml", help="for the tasks and the tracking store")
    c = command("bench", help="data2vec vs data2vec 2.0: speed, MFU, time-to-accuracy")
    c.add_argument("modality", type=_modality)
    c.add_argument("--params", default="params.yaml")


def _report_commands(command: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    """The summaries: report, headline, glue."""
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


def _study_commands(command: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    """The studies: sweep, ablate."""
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


def _model_commands(command: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    """The models in and out, and downstream: export, import, finetune, evaluate."""
    c = command("export", help="a pretrained encoder as an HF Data2Vec model directory")
    c.add_argument("modality", type=_modality)
    c.add_argument("out", help="the directory to write (AutoModel.from_pretrained loads it)")
    c.add_argument("--to", choices=["hf"], required=True, help="the format: hf (transformers)")
    c.add_argument("--from", dest="src", default=None, help="default: models/<m>/pretrained")
    c.add_argument("--prepared", default=None, help="default: data/prepared/<m>")
    c = command("import", help="an HF Data2Vec checkpoint as a d2v pretrained directory")
    c.add_argument("modality", type=_modality)
    c.add_argument("source", help="hf:DIR, an HF model directory (config.json + weights)")
    c.add_argument("--to", dest="out", default=None, help="default: models/<m>/imported")
    for name, what in (
        ("finetune", "fine-tune pretrained and scratch encoders"),
        ("evaluate", "score fine-tuned models and linear probes"),
    ):
        c = command(name, help=what)
        c.add_argument("task", help="a key of params.yaml's finetune (listed by d2v --help)")
        c.add_argument("--params", default="params.yaml")


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
    "repro": "d2v.runs.repro",
    "report": "d2v.runs.report",
    "headline": "d2v.runs.headline",
    "export": "d2v.runs.interop",
    "import": "d2v.runs.interop",
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
