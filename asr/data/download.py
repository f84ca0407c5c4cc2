"""Resumable, verified downloads and safe tar extraction, for every corpus and LM asr can fetch.

`download` resumes an interrupted transfer from its .part file (HTTP Range), retries dropped
connections, and gives the final name only to a complete file whose MD5 matched (when one is known).
`safe_extract` refuses archive members that could write outside the destination.
"""

import hashlib
import http.client
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath

from asr.errors import ASRError, file_error

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
            raise ASRError(
                f"{url}: download failed after {retries} retries ({problem}); run again to resume from {part}"
            )
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
