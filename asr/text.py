"""Text normalisation for training and scoring, and the tokenizer.

Normalisation (documented in the README, used for both references and hypotheses before WER):
Unicode is folded to ASCII (accents dropped), letters are upper-cased, hyphens and other
punctuation become spaces, apostrophes inside words are kept (DON'T), everything else that is
not A-Z, a digit or an apostrophe is dropped, and whitespace is collapsed. This matches
LibriSpeech transcripts, which are already upper-case without punctuation.
"""

import base64
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

    def token_text(self, i: int) -> str:
        """The text of one token ("" for the blank)."""
        return self.chars[i - 1] if i != BLANK else ""

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": self.chars}


class SentencePieceTokenizer:
    """Subword units (sentencepiece BPE or unigram) <-> token ids; id 0 is the CTC blank.

    Whole words and frequent word pieces become single tokens, so a greedy decoder spells a word it
    has heard in training as a unit instead of letter by letter. The trained sentencepiece model is
    kept in `to_dict` as base64 text: checkpoints stay plain data (weights_only loading).
    """

    def __init__(self, model_proto: bytes, kind: str = "bpe"):
        import sentencepiece as spm  # only needed by subword runs

        self.kind, self.model_proto = kind, model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        pieces = [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]
        self.chars = {
            c
            for i, p in enumerate(pieces)
            if not (self.sp.is_control(i) or self.sp.is_unknown(i))
            for c in p.replace("\u2581", "")
        }
        self.pieces = pieces  # token id i + 1 is pieces[i]; "▁" marks the start of a word

    @classmethod
    def train(cls, texts, vocab_size: int, kind: str = "bpe") -> "SentencePieceTokenizer":
        """Learn `vocab_size` pieces from normalised training transcripts."""
        import io

        import sentencepiece as spm

        texts = [t for t in texts if t]
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=kind,
            character_coverage=1.0,
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            hard_vocab_limit=False,  # a small corpus may not support vocab_size pieces: take what it has
            num_threads=1,
            minloglevel=2,
        )
        return cls(model.getvalue(), kind)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size() + 1  # + blank

    def unknown_chars(self, text: str) -> set[str]:
        return {c for c in text if c not in self.chars and c != " "}

    def encode(self, text: str) -> list[int]:
        """Normalised text -> ids. Raises KeyError on a character outside the vocabulary."""
        unknown = self.unknown_chars(text)
        if unknown:
            raise KeyError(min(unknown))
        return [i + 1 for i in self.sp.encode(text)]

    def decode(self, ids) -> str:
        """Ids (blanks and repeats already collapsed) -> text."""
        return self.sp.decode([i - 1 for i in ids if i != BLANK]).strip()

    def token_text(self, i: int) -> str:
        """The text of one token ("" for the blank); a piece that starts a word starts with a space."""
        return self.pieces[i - 1].replace("\u2581", " ") if i != BLANK else ""

    def to_dict(self) -> dict:
        return {"kind": self.kind, "model": base64.b64encode(self.model_proto).decode("ascii")}


TOKENIZER_KINDS = ("char", "bpe", "unigram")


def tokenizer_from_dict(d: dict):
    if d.get("kind") == "char":
        return CharTokenizer(d["chars"])
    if d.get("kind") in ("bpe", "unigram"):
        return SentencePieceTokenizer(base64.b64decode(d["model"]), d["kind"])
    raise ValueError(f"unknown tokenizer kind {d.get('kind')!r}")


def build_tokenizer(config: dict, texts) -> "CharTokenizer | SentencePieceTokenizer":
    """The `tokenizer` config section -> a tokenizer; subword kinds are learnt from `texts`."""
    kind = config.get("kind", "char")
    if kind == "char":
        return CharTokenizer(config.get("chars") or CharTokenizer.DEFAULT_CHARS)
    if kind in ("bpe", "unigram"):
        return SentencePieceTokenizer.train(texts, int(config.get("vocab_size", 256)), kind)
    raise ValueError(f"tokenizer kind {kind!r}: expected one of {', '.join(TOKENIZER_KINDS)}")
