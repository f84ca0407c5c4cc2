"""LibriSpeech preparation: scanning, resumable download from a local server, safe extraction."""

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.data import download as dl
from asr.data import librispeech as ls
from asr.data.manifest import read_manifest
from asr.errors import ASRError

REAL_SAMPLES = Path(__file__).parents[1] / "../shared/data/real-speech/LibriSpeech/test-samples"
GOOD_IDS = ["19-198-0000", "19-198-0001", "26-495-0000"]


def _flac(path: Path, seconds: float):
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, format="FLAC")


def make_tree(subset_dir: Path) -> Path:
    """3 good utterances, 1 transcript line without audio, 1 unreadable file."""
    a = subset_dir / "19" / "198"
    b = subset_dir / "26" / "495"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    _flac(a / "19-198-0000.flac", 0.25)
    _flac(a / "19-198-0001.flac", 0.5)
    (a / "19-198.trans.txt").write_text("19-198-0000 HELLO WORLD\n19-198-0001 it's a test, ok\n")
    _flac(b / "26-495-0000.flac", 0.75)
    (b / "26-495-0002.flac").write_bytes(b"definitely not audio" * 20)
    (b / "26-495.trans.txt").write_text("26-495-0000 THIRD ONE\n26-495-0001 NO AUDIO HERE\n26-495-0002 BROKEN FILE\n")
    return subset_dir


def make_archive(tmp_path: Path, name="tiny") -> Path:
    src = tmp_path / "src"
    make_tree(src / "LibriSpeech" / name)
    (src / "LibriSpeech" / "README.TXT").write_text("readme\n")
    archive = tmp_path / f"{name}-built.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "LibriSpeech", arcname="LibriSpeech")
    return archive


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# ---------------------------------------------------------------------------- scanning


def test_scan_rows_and_skips(tmp_path):
    tree = make_tree(tmp_path / "tiny")
    logs = []
    rows = ls.scan_librispeech(tree, log=logs.append)
    assert [r["id"] for r in rows] == GOOD_IDS
    by_id = {r["id"]: r for r in rows}
    assert by_id["19-198-0001"]["text"] == "IT'S A TEST OK"  # normalised
    assert by_id["19-198-0000"]["duration"] == pytest.approx(0.25)
    assert by_id["26-495-0000"]["speaker"] == "26"
    for r in rows:
        assert Path(r["audio"]).is_absolute() and Path(r["audio"]).is_file()
    skip_line = next(line for line in logs if "skipped" in line)
    assert "skipped 2 of 5 utterances: 1 missing audio, 1 unreadable" in skip_line
    assert "26-495-0001.flac" in skip_line  # the first skipped file is named


def test_scan_without_transcripts_raises(tmp_path):
    (tmp_path / "empty" / "1").mkdir(parents=True)
    with pytest.raises(ASRError, match=r"no LibriSpeech transcripts \(\*\.trans\.txt\) found"):
        ls.scan_librispeech(tmp_path / "empty", log=lambda _: None)


def test_prepare_from_folder_path(tmp_path):
    tree = make_tree(tmp_path / "my-subset")
    out = ls.prepare_librispeech(tmp_path / "root", [str(tree)], out_dir=tmp_path / "m", log=lambda _: None)
    assert out == {"my-subset": tmp_path / "m" / "my-subset.jsonl"}
    rows = read_manifest(out["my-subset"])
    assert [r["id"] for r in rows] == GOOD_IDS
    assert rows[2]["text"] == "THIRD ONE"


def test_prepare_unknown_or_missing_subset(tmp_path):
    with pytest.raises(ASRError, match="valid names: dev-clean"):
        ls.prepare_librispeech(tmp_path, ["dev-cleen"], log=lambda _: None)
    with pytest.raises(ASRError, match="--download") as err:
        ls.prepare_librispeech(tmp_path, ["test-clean"], log=lambda _: None)
    assert str(tmp_path / "LibriSpeech" / "test-clean") in str(err.value)


def test_official_subsets_table():
    assert len(ls.SUBSETS) == 7
    assert ls.SUBSETS["train-clean-100"]["md5"] == "2a93770f6d5c6c964bc36631d331a522"
    assert ls.SUBSETS["dev-clean"]["url"] == "https://www.openslr.org/resources/12/dev-clean.tar.gz"


def test_real_librispeech_samples():
    if not REAL_SAMPLES.is_dir():
        pytest.skip(f"{REAL_SAMPLES} not present")
    rows = ls.scan_librispeech(REAL_SAMPLES, log=lambda _: None)
    assert [r["id"] for r in rows] == ["2412-153948-0000", "61-70968-0000"]
    assert rows[0]["text"].startswith("IF THE READER WILL EXCUSE ME")
    assert rows[1]["speaker"] == "61"
    assert all(1.0 < r["duration"] < 35.0 for r in rows)


# ---------------------------------------------------------------------------- download


PAYLOAD = bytes(range(256)) * 4000  # ~1 MB


@pytest.mark.parametrize("honor_range", [True, False])
def test_download_resumes_after_dropped_connection(server, tmp_path, honor_range):
    server["files"]["/f.bin"] = PAYLOAD
    server["cut_first"], server["honor_range"] = True, honor_range
    dest = dl.download(
        server["url"] + "/f.bin", tmp_path / "f.bin", md5(PAYLOAD), log=lambda _: None, chunk=4096, retry_wait=0
    )
    assert md5(dest.read_bytes()) == md5(PAYLOAD)
    assert not (tmp_path / "f.bin.part").exists()
    assert len(server["requests"]) == 2
    assert server["requests"][1][1] == f"bytes={len(PAYLOAD) // 2}-"  # resumed where the cut happened


def test_download_finishes_a_complete_part_file(server, tmp_path):
    server["files"]["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)  # interrupted after the last byte, before the rename
    dl.download(server["url"] + "/f.bin", tmp_path / "f.bin", md5(PAYLOAD), log=lambda _: None)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_download_wrong_md5_raises_and_leaves_nothing(server, tmp_path):
    server["files"]["/f.bin"] = PAYLOAD
    with pytest.raises(ASRError, match="MD5 mismatch") as err:
        dl.download(server["url"] + "/f.bin", tmp_path / "f.bin", "0" * 32, log=lambda _: None)
    assert "f.bin" in str(err.value) and "0" * 32 in str(err.value) and md5(PAYLOAD) in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_download_http_error_is_not_retried(server, tmp_path):
    with pytest.raises(ASRError, match="HTTP 404"):
        dl.download(server["url"] + "/missing", tmp_path / "x", log=lambda _: None, retry_wait=0)
    assert len(server["requests"]) == 1


def test_existing_verified_file_is_not_downloaded_again(server, tmp_path):
    server["files"]["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin").write_bytes(PAYLOAD)
    dl.download(server["url"] + "/f.bin", tmp_path / "f.bin", md5(PAYLOAD), log=lambda _: None)
    assert server["requests"] == []
    (tmp_path / "f.bin").write_bytes(b"stale")  # wrong content: fetched again
    dl.download(server["url"] + "/f.bin", tmp_path / "f.bin", md5(PAYLOAD), log=lambda _: None)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD and len(server["requests"]) == 1


def test_prepare_downloads_extracts_and_writes_manifest(server, tmp_path, monkeypatch):
    data = make_archive(tmp_path).read_bytes()
    server["files"]["/res/tiny.tar.gz"] = data
    monkeypatch.setitem(ls.SUBSETS, "tiny", {"url": "https://unused.invalid/tiny.tar.gz", "md5": md5(data)})
    root = tmp_path / "root"
    out = ls.prepare_librispeech(root, ["tiny"], download=True, base_url=server["url"] + "/res/", log=lambda _: None)
    assert out == {"tiny": root / "manifests" / "tiny.jsonl"}
    assert [r["id"] for r in read_manifest(out["tiny"])] == GOOD_IDS
    assert (root / "LibriSpeech" / "tiny" / "19" / "198" / "19-198-0000.flac").is_file()
    assert (root / "LibriSpeech" / "README.TXT").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["LibriSpeech", "manifests", "tiny.tar.gz"]
    # Already extracted: a second run does not touch the network.
    ls.prepare_librispeech(root, ["tiny"], download=True, base_url=server["url"] + "/res", log=lambda _: None)
    assert len(server["requests"]) == 1


# ---------------------------------------------------------------------------- safe extraction


def _tar(path: Path, members):
    """members: (TarInfo kwargs, bytes or None)."""
    with tarfile.open(path, "w:gz") as tar:
        for fields, data in members:
            info = tarfile.TarInfo(fields["name"])
            for k, v in fields.items():
                setattr(info, k, v)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _evil_members(outside: Path):
    ok = ({"name": "ok.txt"}, b"fine")
    return {
        "dotdot": [ok, ({"name": "../evil"}, b"x")],
        "nested-dotdot": [ok, ({"name": "a/../../evil"}, b"x")],
        # An absolute name (/abs/evil) is aimed into tmp_path, so a regression cannot write into /.
        "absolute": [ok, ({"name": str(outside / "evil")}, b"x")],
        "symlink-out": [
            ok,
            ({"name": "link", "type": tarfile.SYMTYPE, "linkname": "../outside"}, None),
            ({"name": "link/evil"}, b"x"),
        ],
        "symlink-abs": [ok, ({"name": "link", "type": tarfile.SYMTYPE, "linkname": str(outside)}, None)],
        "hardlink-out": [ok, ({"name": "hl", "type": tarfile.LNKTYPE, "linkname": "../outside/secret"}, None)],
        "device": [ok, ({"name": "dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, None)],
    }


@pytest.mark.parametrize("use_stdlib_filter", [True, False])
@pytest.mark.parametrize("case", list(_evil_members(Path("/x"))))
def test_safe_extract_refuses_escapes(tmp_path, monkeypatch, case, use_stdlib_filter):
    if not use_stdlib_filter:  # our own check must hold alone (Python without the "data" filter)
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    box = tmp_path / "box"
    outside = box / "outside"
    outside.mkdir(parents=True)
    (outside / "secret").write_text("secret")
    members = _evil_members(outside)[case]
    archive = _tar(tmp_path / "evil.tar.gz", members)
    bad_name = members[-1][0]["name"] if case != "symlink-out" else "link"
    with pytest.raises(ASRError) as err:
        dl.safe_extract(archive, box / "dest")
    assert str(archive) in str(err.value) and bad_name in str(err.value)
    written = sorted(str(p.relative_to(box)) for p in box.rglob("*") if "dest" not in p.relative_to(box).parts)
    assert written == ["outside", "outside/secret"]
    assert (outside / "secret").read_text() == "secret"


def test_safe_extract_keeps_safe_links_and_files(tmp_path):
    archive = _tar(
        tmp_path / "ok.tar.gz",
        [
            ({"name": "d", "type": tarfile.DIRTYPE, "mode": 0o755}, None),
            ({"name": "d/a.txt"}, b"hello"),
            ({"name": "d/link", "type": tarfile.SYMTYPE, "linkname": "a.txt"}, None),
            ({"name": "d/hard", "type": tarfile.LNKTYPE, "linkname": "d/a.txt"}, None),
        ],
    )
    dest = dl.safe_extract(archive, tmp_path / "dest")
    assert (dest / "d" / "link").read_text() == "hello"
    assert (dest / "d" / "hard").read_text() == "hello"


def test_safe_extract_corrupt_archive(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b" + b"garbage" * 50)
    with pytest.raises(ASRError, match="bad.tar.gz"):
        dl.safe_extract(bad, tmp_path / "dest")
