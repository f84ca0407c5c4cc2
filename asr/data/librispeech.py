"""LibriSpeech (OpenSLR resource 12): resumable download, safe extraction and JSONL manifests.

Layout inside every subset: SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt (one "ID TRANSCRIPT" line per
utterance) next to SPEAKER-CHAPTER-NNNN.flac. The archives unpack to LibriSpeech/NAME/...
"""
import hashlib
import http.client
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from asr.audio import audio_duration
from asr.data.manifest import write_manifest
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

# What counts as a dropped connection worth retrying (HTTP 4xx errors are not: retrying cannot help).
_TRANSIENT = (ConnectionError, TimeoutError, http.client.HTTPException, urllib.error.URLError)


def file_md5(path, chunk=1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)  # integrity check against the published sums only
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url, part: Path, chunk: int, log, timeout: float) -> None:
    """Append the rest of `url` to `part` (HTTP Range from its current size). Raises on a short read."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            return  # nothing left past our size: the .part is complete (the MD5 check decides)
        raise
    with resp:
        start = 0
        if have and resp.status == 206:
            # Trust the server's own statement of where this piece starts, not our request.
            content_range = resp.headers.get("Content-Range", "")
            try:
                start = int(content_range.split()[1].split("-")[0])
            except (IndexError, ValueError):
                start = -1
        if have and start != have:
            log(f"{url}: server did not resume at byte {have}; restarting from zero")
            have = 0
        length = resp.headers.get("Content-Length")
        expected = have + int(length) if length and length.isdigit() else None
        with open(part, "ab" if have else "wb") as f:
            last = time.monotonic()
            while block := resp.read(chunk):
                f.write(block)
                if time.monotonic() - last > 30:  # a 23 GB archive takes a while: show it is alive
                    last = time.monotonic()
                    done = f.tell()
                    log(f"{url}: {done / 1e6:.0f} MB" + (f" of {expected / 1e6:.0f} MB" if expected else ""))
    # http.client returns b"" (no exception) when the peer closes early, so check the size ourselves.
    got = part.stat().st_size
    if expected is not None and got < expected:
        raise ConnectionError(f"connection closed after {got} of {expected} bytes")


def download(url, dest_path, md5=None, log=print, chunk=1 << 20, retries=5, retry_wait=2.0, timeout=60.0) -> Path:
    """Download `url` to `dest_path`, resuming from `dest_path.part`; verify `md5` before renaming into place.

    An existing file with the right MD5 is kept as is. A dropped connection is retried up to `retries`
    times in a row (the count restarts whenever bytes arrive). A wrong MD5 deletes the download.
    """
    dest = Path(dest_path)
    if dest.is_file():
        if md5 is None:
            log(f"{dest}: already downloaded (no MD5 to check)")
            return dest
        if file_md5(dest, chunk) == md5:
            log(f"{dest}: already downloaded, MD5 ok")
            return dest
        log(f"{dest}: existing file has the wrong MD5; downloading it again")
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        if before:
            log(f"{url}: resuming at {before / 1e6:.1f} MB")
        else:
            log(f"{url}: downloading to {dest}")
        try:
            _fetch(url, part, chunk, log, timeout)
            break
        except urllib.error.HTTPError as e:
            if e.code < 500:
                raise ASRError(f"{url}: download failed (HTTP {e.code} {e.reason})") from None
            problem = f"HTTP {e.code}"
        except _TRANSIENT as e:
            problem = f"{type(e).__name__}: {e}"
        now = part.stat().st_size if part.exists() else 0
        failures = 0 if now > before else failures + 1
        if failures > retries:
            raise ASRError(f"{url}: download failed after {retries} retries ({problem}); "
                           f"run again to resume from {part}")
        log(f"{url}: connection problem ({problem}); retrying")
        time.sleep(retry_wait * max(failures, 1))
    if md5 is not None:
        got = file_md5(part, chunk)
        if got != md5:
            part.unlink()
            raise file_error(dest, f"MD5 mismatch (expected {md5}, got {got}); the download was deleted")
    part.replace(dest)  # only a complete, verified file ever carries the final name
    return dest


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _refusal(member: tarfile.TarInfo, root: Path):
    """Why `member` must not be extracted under `root` (already resolved), or None if it is safe."""
    name = member.name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in PurePosixPath(name).parts:
        return "path contains '..'"
    # resolve() follows symlinks already on disk, so a path through an earlier link is caught too.
    target = (root / name).resolve()
    if not _inside(target, root):
        return "lands outside the destination"
    if member.issym() or member.islnk():
        link = member.linkname
        if link.startswith("/") or PurePosixPath(link).is_absolute():
            return f"link to an absolute path ({link})"
        # A symlink is relative to its own folder; a hard link names a member from the archive root.
        base = (root / name).parent if member.issym() else root
        if not _inside((base / link).resolve(), root):
            return f"link points outside the destination ({link})"
    elif not (member.isfile() or member.isdir()):
        return "device file, FIFO or other special file"
    return None


def safe_extract(archive, dest) -> Path:
    """Extract tar(.gz) `archive` into `dest`, refusing any member that could write outside it.

    Members are checked and extracted one by one in a single pass (a second pass over a 23 GB archive
    would cost minutes); on a refusal the members already extracted stay inside `dest`.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    # Python's own "data" filter (3.12+, backported to 3.10.12/3.11.4) also drops setuid bits etc.
    kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    filter_error = getattr(tarfile, "FilterError", ())
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                why = _refusal(member, root)
                if why:
                    raise ASRError(f"{archive}: refusing to extract member {member.name!r}: {why}")
                tar.extract(member, root, **kwargs)
    except filter_error as e:
        raise ASRError(f"{archive}: refusing to extract member {e.tarinfo.name!r}: {e}") from None
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise file_error(archive, f"not a readable tar archive ({e})") from None
    return dest


def _probe(path: Path):
    """(duration, None) or (None, (kind, problem)) for one audio file."""
    if not path.is_file():
        return None, ("missing audio", "audio file not found")
    try:
        duration = audio_duration(path)
    except Exception as e:  # any decoder failure means the same thing here: unusable audio
        problem = str(e).removeprefix(f"{path}: ") if isinstance(e, ASRError) else f"{type(e).__name__}: {e}"
        return None, ("unreadable", problem)
    if not duration > 0:
        return None, ("zero duration", "audio has no samples")
    return duration, None


def scan_librispeech(subset_dir, log=print, workers=16) -> list[dict]:
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
    # Header reads are I/O bound (281k files for the 960 h set): threads overlap the disk latency.
    # map() in batches keeps the number of pending futures bounded.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i in range(0, len(ids), 4096):
            batch = ids[i:i + 4096]
            for utt, (duration, bad) in zip(batch, pool.map(_probe, [entries[u][0] for u in batch])):
                audio, text = entries[utt]
                if bad:
                    skipped.append((utt, audio, *bad))
                    continue
                rows.append({"id": utt, "audio": str(audio), "duration": duration, "text": text,
                             "speaker": utt.split("-")[0]})
    total = len(rows) + len(skipped)
    if skipped:
        skipped.sort(key=lambda s: s[0])
        counts = {}
        for _, _, kind, _ in skipped:
            counts[kind] = counts.get(kind, 0) + 1
        first = skipped[0]
        log(f"{subset_dir}: skipped {len(skipped)} of {total} utterances: "
            + ", ".join(f"{n} {kind}" for kind, n in counts.items())
            + f" (first: {first[1]}: {first[3]})")
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
            raise ASRError(f"{folder}: LibriSpeech subset {name} not found; pass --download to fetch it "
                           f"or point at an extracted folder")
        plan[name] = (folder, official)
    manifests = {}
    for name, (folder, official) in plan.items():
        if official and not folder.is_dir():
            root.mkdir(parents=True, exist_ok=True)
            _download_and_extract(root, name, base_url, log)
        manifests[name] = write_manifest(out_dir / f"{name}.jsonl", scan_librispeech(folder, log=log))
        log(f"wrote {manifests[name]}")
    return manifests
