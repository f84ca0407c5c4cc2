"""Real sentences from text files (asr.data.sentences): what is kept, how prose is split, what is spoken."""

import pytest

from asr.data.sentences import read_sentences, speakable, split_sentences, text_files
from asr.errors import ASRError


def test_prose_is_split_at_sentence_ends_not_after_titles_or_inside_paragraphs():
    text = 'Mr. Smith went\nhome early. Was he tired?  "Yes!" she said.\n\nA new paragraph\nstarts here'
    assert split_sentences(text) == [
        "Mr. Smith went home early.",
        "Was he tired?",
        '"Yes!" she said.',
        "A new paragraph starts here",
    ]


def test_only_sentences_spoken_as_written_are_kept_and_spoken_keeps_their_pauses():
    s = speakable("It was a cold day -- the well-known man said 'no', and left.")
    assert s.text == "IT WAS A COLD DAY THE WELL KNOWN MAN SAID NO AND LEFT"
    assert s.spoken == "it was a cold day, the well known man said no, and left."
    assert speakable("Don't you know what I mean?").spoken == "don't you know what i mean?"
    for bad in (
        "In 1789 the nation began.",
        "Mr. Smith came to tea today.",
        "The U.S. Senate met today.",
        "They sailed with the FBI agents.",
        "He saw James' dog at the gate.",
        "Too short here.",
        "lowercase start is a fragment of something.",
        "Cost was 5 % more than the year before.",
    ):
        assert speakable(bad) is None, bad


def test_read_sentences_takes_files_and_folders_strips_gutenberg_and_dedups(tmp_path):
    (tmp_path / "a.txt").write_text(
        "Header of the site.\n*** START OF THE BOOK ***\nThe sky was grey all day long."
        " The sky was grey all day long.\n*** END OF THE BOOK ***\nLicence words follow on."
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("One line holds one full sentence.\nAnother line holds another one.\n")
    found = read_sentences(text_files(tmp_path))
    assert [s.text for s in found] == [
        "THE SKY WAS GREY ALL DAY LONG",
        "ONE LINE HOLDS ONE FULL SENTENCE",
        "ANOTHER LINE HOLDS ANOTHER ONE",
    ]
    with pytest.raises(ASRError, match="missing.txt.*not found"):
        read_sentences([tmp_path / "missing.txt"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ASRError, match="no .txt files"):
        text_files(tmp_path / "empty")


def test_sentence_lists_without_end_marks_curly_apostrophes_and_opening_quotes():
    listed = "The cat sat on the mat\nA dog ran in the park\nShe smiled at her friend"
    assert split_sentences(listed) == ["The cat sat on the mat", "A dog ran in the park", "She smiled at her friend"]
    wrapped = "The cat sat on the mat and\nlooked at the dog that ran\nin the park all day. It slept."
    assert split_sentences(wrapped) == [
        "The cat sat on the mat and looked at the dog that ran in the park all day.",
        "It slept.",
    ]
    assert split_sentences("He met J. Smith at noon. Then he left.") == ["He met J. Smith at noon.", "Then he left."]
    assert (
        speakable(split_sentences("It\u2019s not what she isn\u2019t doing today.")[0]).text
        == "IT'S NOT WHAT SHE ISN'T DOING TODAY"
    )
    assert speakable('"Yes, of course," she said to him.').text == "YES OF COURSE SHE SAID TO HIM"
    assert split_sentences("Text of the book is here.\n*** END OF THE BOOK ***\nLicence.") == [
        "Text of the book is here."
    ]
