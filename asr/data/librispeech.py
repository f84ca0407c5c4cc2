"""LibriSpeech (OpenSLR resource 12): resumable download, safe extraction and JSONL manifests.

Layout inside every subset: SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt (one "ID TRANSCRIPT" line per
utterance) next to SPEAKER-CHAPTER-NNNN.flac. The archives unpack to LibriSpeech/NAME/...
"""

import shutil
from pathlib import Path

from asr.data.download import download, safe_extract
from asr.data.manifest import probe_all, report_skipped, write_manifest
from asr.errors import ASRError, file_error
from asr.text import normalize

BASE_URL = "https://www.openslr.org/resources/12"

# Official MD5 sums, as published in https://www.openslr.org/resources/12/md5sum.txt and repeated
# in public recipes (e.g. PaddlePaddle/PaddleSpeech data/librispeech/librispeech.py).
_MD5 = {
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other": "fb5a50374b501bb3bac4815ee91d3135",
    "train-clean-100": "2a93770f6d5c6c964bc36631d331a522",
    "train-clean-360": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500": "d1a0fd59409feb2c614ce4d30c387708",
}
SUBSETS = {name: {"url": f"{BASE_URL}/{name}.tar.gz", "md5": md5} for name, md5 in _MD5.items()}


def scan_librispeech(subset_dir, log=print) -> list[dict]:
    """Rows {id, audio, duration, text, speaker} for every transcribed utterance, sorted by id."""
    subset_dir = Path(subset_dir).resolve()
    transcripts = sorted(subset_dir.rglob("*.trans.txt"))
    if not transcripts:
        raise file_error(subset_dir, "no LibriSpeech transcripts (*.trans.txt) found")
    entries, skipped = {}, []  # skipped: (id, path, kind, problem)
    for trans in transcripts:
        for line in trans.read_text(encoding="utf-8").splitlines():
            utt, _, text = line.strip().partition(" ")
            if not utt:
                continue
            text = normalize(text)
            if utt in entries:
                skipped.append((utt, trans, "duplicate id", f"{utt} already listed"))
            elif not text:  # CTC cannot train on, nor WER score, an empty reference
                skipped.append((utt, trans, "empty transcript", f"{utt} has no text"))
            else:
                entries[utt] = (trans.parent / f"{utt}.flac", text)
    ids = sorted(entries)
    rows = []
    for utt, (duration, bad) in zip(ids, probe_all(entries[u][0] for u in ids)):
        audio, text = entries[utt]
        if bad:
            skipped.append((utt, audio, *bad))
        else:
            rows.append(
                {"id": utt, "audio": str(audio), "duration": duration, "text": text, "speaker": utt.split("-")[0]}
            )
    report_skipped(subset_dir, skipped, len(rows) + len(skipped), log)
    hours = sum(r["duration"] for r in rows) / 3600
    log(f"{subset_dir}: {len(rows)} utterances, {hours:.2f} h")
    return rows


def _download_and_extract(root: Path, name: str, base_url, log) -> None:
    """Fetch NAME.tar.gz into root and unpack it to root/LibriSpeech/NAME."""
    url = SUBSETS[name]["url"] if base_url is None else f"{base_url.rstrip('/')}/{name}.tar.gz"
    archive = download(url, root / f"{name}.tar.gz", SUBSETS[name]["md5"], log=log)
    # Unpack into a scratch folder and rename the subset into place at the end, so an interrupted
    # or refused extraction never leaves a half-filled LibriSpeech/NAME that looks finished.
    scratch = root / f".extract-{name}"
    shutil.rmtree(scratch, ignore_errors=True)
    log(f"{archive}: extracting")
    try:
        safe_extract(archive, scratch)
        src = scratch / "LibriSpeech" / name
        if not src.is_dir():
            raise file_error(archive, f"does not contain LibriSpeech/{name}/")
        target = root / "LibriSpeech"
        target.mkdir(exist_ok=True)
        for extra in (scratch / "LibriSpeech").iterdir():  # README.TXT, SPEAKERS.TXT, ... (shared)
            if extra != src and not (target / extra.name).exists():
                extra.replace(target / extra.name)
        src.replace(target / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log(f"{archive}: extracted; the archive can be deleted to save space")


def prepare_librispeech(root, subsets, *, download=False, out_dir=None, base_url=None, log=print) -> dict:
    """Write a manifest NAME.jsonl per subset into `out_dir` (default root/manifests).

    Each subset is either an existing LibriSpeech-layout folder (NAME = its basename) or an official
    name looked up as root/LibriSpeech/NAME, downloaded and extracted there when `download` is true.
    Returns {NAME: manifest path}.
    """
    root = Path(root)
    out_dir = Path(out_dir) if out_dir is not None else root / "manifests"
    if isinstance(subsets, (str, Path)):
        subsets = [subsets]
    # Resolve every name before any work, so a typo in the last one fails before a 6 GB download.
    plan = {}
    for spec in subsets:
        path = Path(spec)
        if path.is_dir():
            name, folder, official = path.resolve().name, path, False
        elif str(spec) in SUBSETS:
            name, folder, official = str(spec), root / "LibriSpeech" / str(spec), True
        else:
            raise ASRError(f"{spec}: not a folder nor a LibriSpeech subset (valid names: {', '.join(SUBSETS)})")
        if name in plan:
            raise ASRError(f"{spec}: two subsets would both write {name}.jsonl")
        if official and not folder.is_dir() and not download:
            raise ASRError(
                f"{folder}: LibriSpeech subset {name} not found; pass --download to fetch it "
                f"or point at an extracted folder"
            )
        plan[name] = (folder, official)
    manifests = {}
    for name, (folder, official) in plan.items():
        if official and not folder.is_dir():
            root.mkdir(parents=True, exist_ok=True)
            _download_and_extract(root, name, base_url, log)
        manifests[name] = write_manifest(out_dir / f"{name}.jsonl", scan_librispeech(folder, log=log))
        log(f"wrote {manifests[name]}")
    return manifests
