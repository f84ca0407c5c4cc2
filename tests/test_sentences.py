"""Real sentences from text files (asr.data.sentences): what is kept, how prose is split, what is spoken."""
import pytest

from asr.data.sentences import read_sentences, speakable, split_sentences, text_files
from asr.errors import ASRError


def test_prose_is_split_at_sentence_ends_not_after_titles_or_inside_paragraphs():
    text = "Mr. Smith went\nhome early. Was he tired?  \"Yes!\" she said.\n\nA new paragraph\nstarts here"
    assert split_sentences(text) == ["Mr. Smith went home early.", "Was he tired?", '"Yes!" she said.',
                                     "A new paragraph starts here"]


def test_only_sentences_spoken_as_written_are_kept_and_spoken_keeps_their_pauses():
    s = speakable("It was a cold day -- the well-known man said 'no', and left.")
    assert s.text == "IT WAS A COLD DAY THE WELL KNOWN MAN SAID NO AND LEFT"
    assert s.spoken == "it was a cold day, the well known man said no, and left."
    assert speakable("Don't you know what I mean?").spoken == "don't you know what i mean?"
    for bad in ("In 1789 the nation began.", "Mr. Smith came to tea today.", "The U.S. Senate met today.",
                "They sailed with the FBI agents.", "He saw James' dog at the gate.", "Too short here.",
                "lowercase start is a fragment of something.", "Cost was 5 % more than the year before."):
        assert speakable(bad) is None, bad


def test_read_sentences_takes_files_and_folders_strips_gutenberg_and_dedups(tmp_path):
    (tmp_path / "a.txt").write_text("Header of the site.\n*** START OF THE BOOK ***\nThe sky was grey all day long."
                                    " The sky was grey all day long.\n*** END OF THE BOOK ***\nLicence words follow on.")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("One line holds one full sentence.\nAnother line holds another one.\n")
    found = read_sentences(text_files(tmp_path))
    assert [s.text for s in found] == ["THE SKY WAS GREY ALL DAY LONG", "ONE LINE HOLDS ONE FULL SENTENCE",
                                       "ANOTHER LINE HOLDS ANOTHER ONE"]
    with pytest.raises(ASRError, match="missing.txt.*not found"):
        read_sentences([tmp_path / "missing.txt"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ASRError, match="no .txt files"):
        text_files(tmp_path / "empty")
