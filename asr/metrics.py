"""Word and character error counts with jiwer, on texts already normalised (asr.text.normalize)."""

import jiwer


def error_counts(refs: list[str], hyps: list[str]) -> tuple[int, int, int, int]:
    """(word errors, reference words, char errors, reference chars); pairs with an empty reference are skipped."""
    pairs = [(r, h) for r, h in zip(refs, hyps) if r.strip()]
    if not pairs:
        return 0, 0, 0, 0
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    word_err = words.substitutions + words.deletions + words.insertions
    char_err = chars.substitutions + chars.deletions + chars.insertions
    return word_err, sum(len(r.split()) for r in refs), char_err, sum(len(r) for r in refs)


def wer(refs: list[str], hyps: list[str]) -> float:
    word_err, words, _, _ = error_counts(refs, hyps)
    return word_err / max(words, 1)
