"""speechocean762 (OpenSLR resource 101, CC BY 4.0): read English by 250 Mandarin-L1 speakers, half children.

The archive unpacks to speechocean762/{train,test}/ (Kaldi data directories: wav.scp, text, utt2spk,
spk2age, spk2gender) and WAVE/SPEAKERnnnn/ (16 kHz audio); wav.scp paths are relative to the corpus
folder. Train and test have 2,500 utterances and 125 speakers each, none in both. A few train speakers
are held out as dev (for choosing checkpoints and LM weights), as many children as adults.

OpenSLR publishes no checksum for this archive. What is checked: the byte count the server announces
(a short transfer is resumed, never used), the gzip CRC of the whole stream while extracting, and that
the result holds both halves with their 2,500 utterances each.
"""

import shutil
from pathlib import Path

from asr.data.download import download, safe_extract
from asr.data.kaldi import read_kaldi_dir
from asr.data.manifest import write_manifest
from asr.errors import ASRError, file_error

URL = "https://www.openslr.org/resources/101/speechocean762.tar.gz"
UTTERANCES = 2500  # in each of train and test
CHILD_MAX_AGE = 15  # the corpus's children are 6-15, its adults 19-37


def corpus_dir(root: Path):
    """The folder holding train/ and test/: root itself (an extracted copy) or root/speechocean762."""
    for folder in (root, root / "speechocean762"):
        if (folder / "train" / "wav.scp").is_file() and (folder / "test" / "wav.scp").is_file():
            return folder
    return None


def _download_and_extract(root: Path, base_url, log) -> Path:
    url = URL if base_url is None else f"{base_url.rstrip('/')}/speechocean762.tar.gz"
    archive = download(url, root / "speechocean762.tar.gz", md5=None, log=log)
    scratch = root / ".extract-speechocean762"  # renamed into place only when complete and checked
    shutil.rmtree(scratch, ignore_errors=True)
    log(f"{archive}: extracting")
    try:
        safe_extract(archive, scratch)
        found = corpus_dir(scratch)
        if found is None:
            raise file_error(archive, "does not contain speechocean762/train and test (a damaged or wrong download?)")
        for half in ("train", "test"):
            n = sum(1 for line in open(found / half / "wav.scp", encoding="utf-8") if line.strip())
            if n != UTTERANCES:
                raise file_error(archive, f"{half}/wav.scp lists {n} utterances, not {UTTERANCES}")
        found.replace(root / "speechocean762")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log(f"{archive}: extracted; the archive can be deleted to save space")
    return root / "speechocean762"


def dev_speakers(rows, n: int) -> set:
    """n train speakers for dev, half children and half adults, spread evenly over the sorted IDs."""
    groups = {}
    for row in rows:
        groups.setdefault(row["age_group"], set()).add(row["speaker"])
    chosen = set()
    for i, (_, speakers) in enumerate(sorted(groups.items())):
        speakers, k = sorted(speakers), n // len(groups) + (i < n % len(groups))
        chosen |= {speakers[j * len(speakers) // k] for j in range(k)} if k else set()
    return chosen


def prepare_speechocean762(
    root, *, download=False, out_dir="data/speechocean762", n_dev_speakers=10, base_url=None, log=print
) -> dict:
    """Manifests train.jsonl, dev.jsonl (held-out train speakers) and test.jsonl in `out_dir`.

    `root` holds an extracted corpus (itself, or in root/speechocean762); with `download`, a missing
    corpus is fetched from OpenSLR into root/speechocean762. Returns {name: manifest path}.
    """
    root, out_dir = Path(root), Path(out_dir)
    corpus = corpus_dir(root)
    if corpus is None:
        if not download:
            raise ASRError(
                f"{root}: no speechocean762 corpus (train/wav.scp and test/wav.scp) here or in "
                f"{root / 'speechocean762'}; pass --download to fetch it from OpenSLR"
            )
        root.mkdir(parents=True, exist_ok=True)
        corpus = _download_and_extract(root, base_url, log)
    halves = {}
    for half in ("train", "test"):
        rows = read_kaldi_dir(corpus / half, root=corpus, log=log)
        for row in rows:
            age = row.get("age")
            row["age_group"] = "unknown" if not isinstance(age, int) else "child" if age <= CHILD_MAX_AGE else "adult"
        halves[half] = rows
    held_out = dev_speakers(halves["train"], n_dev_speakers)
    splits = {
        "train": [r for r in halves["train"] if r["speaker"] not in held_out],
        "dev": [r for r in halves["train"] if r["speaker"] in held_out],
        "test": halves["test"],
    }
    manifests = {}
    for name, rows in splits.items():
        if not rows:
            raise ASRError(f"{corpus}: the {name} split came out empty")
        manifests[name] = write_manifest(out_dir / f"{name}.jsonl", rows)
        log(f"wrote {manifests[name]}: {len(rows)} utterances, {len({r['speaker'] for r in rows})} speakers")
    return manifests
