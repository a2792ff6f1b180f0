"""Bible verses from the Debian SWORD modules (`sword-text-web`, `sword-text-kjv`) via `diatheke`.

Each record is one verse: `Verse(module, book, chapter, verse, text)`, `module` the short name
("WEB", "KJV"), `book` as diatheke names it ("Genesis", "I Samuel", "Revelation of John"), `text`
plain UTF-8 with single spaces. Order: canonical book order, then chapter, then verse, so an
export is deterministic and cache friendly.

Only the 66 books shared by both modules are exported (the WEB module also has the deuterocanon),
so the same key names the same verse in WEB and KJV (the WEB module uses NRSVA versification, which
matches KJV's for nearly every verse of these books).

How the export works, and the quirks it works around:
- one `diatheke -f OSIS -k <Book>` process per book (about 0.1 s each), never one per verse;
  a single whole-Bible range makes diatheke repeat the last psalm title before every later verse;
- diatheke prints a verse's headings (section headings, psalm titles) on the verse's line before
  its key (`A Psalm by David.  Psalms 3:1: ...`): everything before the key is dropped;
- plain output (`-f plain`) loses spaces: the WEB module marks every word with `<w>` and some words
  have no space between their elements (`<w>God</w><w>created</w>` where a footnote was), so the
  OSIS output is read instead and, for WEB, a space is put before each `<w` that follows a word;
  KJV's `<w>` elements can split a word (`<w>give</w>n`), so its text is joined as is;
- footnotes and titles inside a verse are removed with their content, all other markup is stripped,
  as are KJV's pilcrows and leftover `\\nd` markers, the Song of Solomon's speaker labels
  ("Beloved", "Lover", "Friends", set off by spaces) and the WEB glossary after Rev 22:21;
- a line without a key continues the previous verse (verses can span several lines).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from d2v.data.errors import DataError, SourceMissingError

log = logging.getLogger(__name__)

PARAM = "data.text.source"
# The protestant canon in order, spelled as diatheke prints the books (these also work as keys).
BOOKS: tuple[str, ...] = (
    "Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges", "Ruth",
    "I Samuel", "II Samuel", "I Kings", "II Kings", "I Chronicles", "II Chronicles", "Ezra",
    "Nehemiah", "Esther", "Job", "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon", "Isaiah",
    "Jeremiah", "Lamentations", "Ezekiel", "Daniel", "Hosea", "Joel", "Amos", "Obadiah", "Jonah",
    "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai", "Zechariah", "Malachi", "Matthew", "Mark",
    "Luke", "John", "Acts", "Romans", "I Corinthians", "II Corinthians", "Galatians", "Ephesians",
    "Philippians", "Colossians", "I Thessalonians", "II Thessalonians", "I Timothy", "II Timothy",
    "Titus", "Philemon", "Hebrews", "James", "I Peter", "II Peter", "I John", "II John",
    "III John", "Jude", "Revelation of John",
)  # fmt: skip
PACKAGES = {"WEB": "sword-text-web", "KJV": "sword-text-kjv"}
# Modules whose <w> elements are whole words, so adjacent elements need a space between them.
WHOLE_WORD_ELEMENTS = frozenset({"WEB"})
SWORD_DIRS = ("~/.sword", "/usr/share/sword")

_DROP_WITH_CONTENT = re.compile(r"<(note|title)\b[^>]*>.*?</\1>", re.S)
# A space before `<w` unless it follows a space or an opening quote, bracket or dash.
_GLUED_OPEN = re.compile(r"(?<=[^\s“‘(\[—])(?=<w[\s>])")
_GLUED_CLOSE = re.compile(r"(?<=</w>)(?=\w)")
_TAG = re.compile(r"<[^>]*>")
_APPENDIX = re.compile(r" {8,}.*", re.S)  # the WEB glossary follows Rev 22:21 after many spaces
_USFM_MARKER = re.compile(r"\\[a-z]+\*?(?=\s|<|$)")  # KJV keeps `\nd` (divine name) markers
_SPACE_BEFORE_PUNCT = re.compile(r" +(?=[,.;:!?])")  # left where a footnote marker was
_PILCROW = "\u00b6"  # KJV paragraph marks
# Speaker labels of the Song of Solomon, set off by two or more spaces inside the verse text.
_SPEAKER = re.compile(r"\s{2,}(?:<w>)?(?:Beloved|Lover|Friends)(?:</w>)?\s{2,}")


@dataclass(frozen=True)
class Verse:
    module: str  # short name: "WEB", "KJV"
    book: str  # diatheke's book name, e.g. "I Samuel"
    chapter: int
    verse: int
    text: str  # plain text, single spaces, no markup


def _conf_dirs() -> list[Path]:
    dirs = [Path(os.environ["SWORD_PATH"])] if os.environ.get("SWORD_PATH") else []
    return [*dirs, *(Path(d).expanduser() for d in SWORD_DIRS)]


def find_module(name: str) -> str | None:
    """The SWORD module id for `name` (its id, `Abbreviation=` or an `Obsoletes=` name)."""
    for root in _conf_dirs():
        for conf in sorted((root / "mods.d").glob("*.conf")):
            text = conf.read_text(encoding="utf-8", errors="replace")
            match = re.search(r"^\[([^\]]+)\]", text, re.M)
            if match is None:
                continue
            module_id = match.group(1)
            aliases = re.findall(r"^(?:Abbreviation|Obsoletes)=(.+?)\s*$", text, re.M)
            if name in (module_id, *aliases):
                return module_id
    return None


def clean_verse_text(osis: str, whole_word_elements: bool) -> str:
    """Plain text of one verse's OSIS markup (see the module docstring for the rules)."""
    text = _APPENDIX.sub("", osis)
    text = _SPEAKER.sub(" ", _DROP_WITH_CONTENT.sub(" ", text))
    if whole_word_elements:
        text = _GLUED_CLOSE.sub(" ", _GLUED_OPEN.sub(" ", text))
    text = _USFM_MARKER.sub("", _TAG.sub("", text)).replace(_PILCROW, " ")
    return _SPACE_BEFORE_PUNCT.sub("", " ".join(text.split()))


def parse_book(output: str, module: str, book: str, module_id: str) -> list[Verse]:
    """Verses of one `diatheke -f OSIS -k <book>` output, cleaned; empty verses left out."""
    key = re.compile(rf"(?:^|(?<=\s)){re.escape(book)} (\d+):(\d+): ?")
    parts: list[tuple[int, int, list[str]]] = []
    for line in output.splitlines():
        if line.strip() == f"({module_id})":
            continue
        match = key.search(line)
        if match is not None:
            parts.append((int(match.group(1)), int(match.group(2)), [line[match.end() :]]))
        elif parts:
            parts[-1][2].append(line)  # a verse continued on the next line
    whole = module in WHOLE_WORD_ELEMENTS
    verses = []
    for chapter, number, lines in parts:
        text = clean_verse_text(" ".join(lines), whole)
        if text:
            verses.append(Verse(module, book, chapter, number, text))
    return verses


def _run_diatheke(module_id: str, book: str) -> str:
    cmd = ["diatheke", "-b", module_id, "-f", "OSIS", "-k", book]
    try:
        done = subprocess.run(cmd, capture_output=True, check=True, timeout=120)
    except subprocess.CalledProcessError as e:
        raise DataError(f"diatheke failed for {module_id} {book}: {e.stderr!r}") from e
    return done.stdout.decode("utf-8", errors="replace")


def export_bible(module: str, books: tuple[str, ...] = BOOKS, workers: int = 4) -> list[Verse]:
    """All verses of `books` in SWORD module `module` ("WEB" or "KJV"), in canonical order.

    One diatheke process per book, `workers` at a time. SourceMissingError (naming the Debian
    package and the param `data.text.source`) if diatheke or the module is not installed.
    """
    if shutil.which("diatheke") is None:
        raise SourceMissingError("Debian package diatheke", PARAM, "no `diatheke` on PATH")
    module_id = find_module(module)
    if module_id is None:
        package = PACKAGES.get(module, f"a SWORD module named {module}")
        raise SourceMissingError(f"Debian package {package}", PARAM, f"no module {module}")
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        outputs = pool.map(_run_diatheke, [module_id] * len(books), books)
        verses: list[Verse] = []
        for book, output in tqdm(
            zip(books, outputs, strict=True),
            total=len(books),
            desc=f"export {module}",
            unit=" books",
        ):
            found = parse_book(output, module, book, module_id)
            if not found:
                raise DataError(f"diatheke printed no verses for {module_id} {book}")
            verses.extend(found)
    log.info(
        "exported %d verses of %d books from %s (%s)", len(verses), len(books), module, module_id
    )
    return verses
