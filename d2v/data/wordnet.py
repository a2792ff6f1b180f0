"""WordNet example sentences (Debian `wordnet-base`): short, real, public-domain English.

In the `data.<pos>` files each synset line ends with `| gloss; "example"; "example"`; the quoted
parts after the bar are the usage examples. The licence header lines start with two spaces.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from d2v.data.errors import SourceMissingError

WORDNET_DIR = "/usr/share/wordnet"
_POS_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
_QUOTED = re.compile(r'"([^"]+)"')


def wordnet_examples(wordnet_dir: str | os.PathLike = WORDNET_DIR, param: str = "") -> list[str]:
    """All example sentences, in file order (deterministic), duplicates removed.

    `param` names the param that switches the source, for the error when WordNet is missing.
    """
    root = Path(wordnet_dir)
    files = [root / name for name in _POS_FILES]
    if not all(f.is_file() for f in files):
        raise SourceMissingError(
            "Debian package wordnet-base", param or "data.*.wordnet_dir", f"no {root}/data.noun"
        )
    seen: set[str] = set()
    out: list[str] = []
    for f in files:
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("  ") or "|" not in line:
                    continue
                gloss = line.split("|", 1)[1]
                for example in _QUOTED.findall(gloss):
                    example = " ".join(example.split())
                    if example and example not in seen:
                        seen.add(example)
                        out.append(example)
    return out
