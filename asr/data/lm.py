"""The official LibriSpeech language models and lexicon (OpenSLR resource 11), downloaded with the
same resumable, verified download as the corpus (`asr.data.download.download`).

OpenSLR publishes no checksum list for resource 11. The MD5 sums below are those hard-coded in
public recipes (sdrobert/pytorch-database-prep `librispeech.py`, agreeing with the byte sizes in
Kaldi's egs/librispeech/s5/local/download_lm.sh). librispeech-lexicon.txt changed on the server
at least once (Kaldi lists two sizes), so it is checked against both known sizes instead of an MD5.
The lexicon's phonemes are not used: the decoder spells each word with the model's own tokens.
"""

from pathlib import Path

from asr.data.download import download
from asr.errors import file_error

BASE_URL = "https://www.openslr.org/resources/11"
FILES = {  # name: (md5, accepted sizes in bytes)
    "3-gram.arpa.gz": ("74cbb837e582378c26c602e1c8cbcb9c", (759636181,)),
    "3-gram.pruned.1e-7.arpa.gz": ("9a0f1325bcaf3a0f7b7be4be10823c2a", (34094057,)),
    "3-gram.pruned.3e-7.arpa.gz": ("8f67ec741827742eee05799ab7605b50", (13654242,)),
    "4-gram.arpa.gz": ("6abdcd5b055bd482e4f9defe91d40408", (1355172078,)),
    "librispeech-lexicon.txt": (None, (5627653, 5627646)),
}
DEFAULT_FILES = ("3-gram.pruned.1e-7.arpa.gz", "3-gram.arpa.gz", "4-gram.arpa.gz", "librispeech-lexicon.txt")


def prepare_librispeech_lm(root, files=DEFAULT_FILES, base_url=BASE_URL, log=print) -> dict:
    """Download `files` into root/lm (skipping verified ones); returns {name: path}."""
    unknown = [f for f in files if f not in FILES]
    if unknown:
        raise file_error(unknown[0], f"not a LibriSpeech LM file (known: {', '.join(FILES)})")
    out = {}
    for name in files:
        md5, sizes = FILES[name]
        dest = Path(root) / "lm" / name
        path = download(f"{base_url.rstrip('/')}/{name}", dest, md5, log=log)
        size = path.stat().st_size
        if size not in sizes:
            path.unlink()
            raise file_error(
                dest, f"unexpected size {size} (expected {' or '.join(map(str, sizes))}); the download was deleted"
            )
        out[name] = path
    return out
