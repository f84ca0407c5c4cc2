"""The error report of `asr evaluate`: breakdown by a field, the most frequent word errors, the spread."""

from asr.evaluate import breakdown, breakdown_lines, spread, top_errors


def test_top_errors_counts_substitutions_deletions_insertions():
    refs = ["THE CAT SAT ON THE MAT", "THE CAT RAN", "A B"]
    hyps = ["THE HAT SAT THE MAT", "THE HAT RAN AWAY", "A B"]
    top = top_errors(refs, hyps)
    assert top["substitutions"] == [["CAT", "HAT", 2]]
    assert top["deletions"] == [["ON", 1]]
    assert top["insertions"] == [["AWAY", 1]]
    assert top_errors([], []) == {"substitutions": [], "deletions": [], "insertions": []}


def test_neighbouring_errors_are_counted_word_by_word():
    """jiwer joins neighbouring substitutions (and deletions) into one multi-word entry: counted per word here."""
    top = top_errors(["A B C D E", "THE PRISON IS OLD"], ["X Y C Z E", "IS OLD"])
    assert top["substitutions"] == [["A", "X", 1], ["B", "Y", 1], ["D", "Z", 1]]
    assert top["deletions"] == [["PRISON", 1], ["THE", 1]]


def test_breakdown_weights_by_words_and_keeps_rows_without_the_field():
    rows = [{"age_group": "child"}, {"age_group": "child"}, {"age_group": "adult"}, {}, {"age_group": "adult"}]
    per_utt = [
        {"word_errors": 1, "words": 4, "char_errors": 2, "chars": 20},
        {"word_errors": 3, "words": 6, "char_errors": 5, "chars": 30},
        {"word_errors": 0, "words": 5, "char_errors": 0, "chars": 25},
        {"word_errors": 2, "words": 2, "char_errors": 4, "chars": 8},
        {"error": "x.wav: unreadable"},
    ]  # a failed file is not scored
    table = breakdown(rows, per_utt, "age_group")
    assert list(table) == ["(none)", "adult", "child"]
    assert table["child"] == {"wer": 0.4, "cer": 0.14, "utterances": 2, "words": 10}
    assert table["adult"]["utterances"] == 1 and table["adult"]["wer"] == 0


def test_spread_names_min_quartiles_max():
    assert spread([0.1, 0.2, 0.3, 0.4, 0.5]) == "min 10.0% / 25% 20.0% / median 30.0% / 75% 40.0% / max 50.0%"


def test_breakdown_lines_list_few_values_and_summarise_many():
    few = {"child": {"wer": 0.5, "cer": 0.25, "utterances": 2, "words": 10}}
    many = {f"s{i:02d}": {"wer": i / 20, "cer": 0.1, "utterances": 1, "words": 5} for i in range(13)}
    top = {"substitutions": [["CAT", "HAT", 2]], "deletions": [], "insertions": [["AWAY", 1]]}
    lines = breakdown_lines({"by": {"age_group": few, "speaker": many}, "top_errors": top})
    assert lines == [
        "  age_group child: WER 50.00%  CER 25.00%  (2 utterances, 10 words)",
        "  speaker: 13 values, WER min 0.0% / 25% 15.0% / median 30.0% / 75% 45.0% / max 60.0% (by-speaker.tsv)",
        "  most frequent substitutions: CAT->HAT 2",
        "  most frequent insertions: AWAY 1",
    ]
