"""Text normalisation for training and scoring, and the tokenizer.

Normalisation (documented in the README, used for both references and hypotheses before WER):
Unicode is folded to ASCII (accents dropped), letters are upper-cased, hyphens and other
punctuation become spaces, apostrophes inside words are kept (DON'T), everything else that is
not A-Z, a digit or an apostrophe is dropped, and whitespace is collapsed. This matches
LibriSpeech transcripts, which are already upper-case without punctuation.
"""
import re
import unicodedata

BLANK = 0  # CTC blank is always token 0

_NON_WORD = re.compile(r"[^A-Z0-9' ]+")
_STRAY_APOSTROPHE = re.compile(r"(?<![A-Z0-9])'|'(?![A-Z0-9])")
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """'Hello,  world -- it's 5pm!' -> "HELLO WORLD IT'S 5PM"."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = text.upper().replace("`", "'")
    text = _NON_WORD.sub(" ", text)
    text = _STRAY_APOSTROPHE.sub(" ", text)  # quotes like 'THIS' lose their marks, DON'T keeps it
    return _SPACES.sub(" ", text).strip()


class CharTokenizer:
    """Characters <-> token ids. Id 0 is the CTC blank; the rest are the given characters.

    Any tokenizer (e.g. a future BPE one) offers the same four things: `encode`, `decode`,
    `vocab_size` and `to_dict` (plain data stored in checkpoints, read back by `tokenizer_from_dict`).
    """

    kind = "char"
    DEFAULT_CHARS = " '" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

    def __init__(self, chars: str = DEFAULT_CHARS):
        self.chars = chars
        self._ids = {c: i + 1 for i, c in enumerate(chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1  # + blank

    def unknown_chars(self, text: str) -> set[str]:
        return {c for c in text if c not in self._ids}

    def encode(self, text: str) -> list[int]:
        """Normalised text -> ids. Raises KeyError on a character outside the vocabulary."""
        return [self._ids[c] for c in text]

    def decode(self, ids) -> str:
        """Ids (blanks and repeats already collapsed) -> text."""
        return "".join(self.chars[i - 1] for i in ids if i != BLANK).strip()

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": self.chars}


def tokenizer_from_dict(d: dict) -> CharTokenizer:
    if d.get("kind") != "char":
        raise ValueError(f"unknown tokenizer kind {d.get('kind')!r}")
    return CharTokenizer(d["chars"])
