"""headline: pretrained vs scratch per task with verdicts, printed at the end of `make run`."""

from __future__ import annotations

import argparse
from pathlib import Path

from d2v.data.errors import DataError
from d2v.headline import load_rows, render


def print_headline(eval_dir: Path, glue: Path, report: Path) -> None:
    rows = load_rows(eval_dir, glue)
    if not rows:
        raise DataError(f"no evaluation results in {eval_dir}: run `dvc repro` first")
    seeds = sorted({r.seeds for r in rows if r.seeds})
    print(render(rows))
    print(
        f"mean ± sample std over {'/'.join(map(str, seeds))} seeds; gain > 0 is better for"
        " pretrained; verdicts at 2x the larger std; paper numbers are paper scale (Base models,"
        " full datasets)."
    )
    print(f"report: {report}" + ("" if report.exists() else " (not built yet: dvc repro report)"))


def command(args: argparse.Namespace, argv: list[str]) -> None:
    """`d2v headline` (the end of `make run`)."""
    print_headline(Path(args.eval_dir), Path(args.glue), Path(args.report))
