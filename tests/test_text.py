import pytest

from asr.text import BLANK, CharTokenizer, normalize, tokenizer_from_dict


@pytest.mark.parametrize("raw,expected", [
    ("Hello,  world -- it's 5pm!", "HELLO WORLD IT'S 5PM"),
    ("Café déjà vu", "CAFE DEJA VU"),
    ("'quoted' words", "QUOTED WORDS"),
    ("well-known\tfact\n", "WELL KNOWN FACT"),
    ("MR. SMITH'S DOG", "MR SMITH'S DOG"),
    ("", ""),
    ("?!...", ""),
])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_char_tokenizer_round_trip_and_blank():
    tok = CharTokenizer()
    ids = tok.encode("DON'T STOP")
    assert BLANK not in ids
    assert tok.decode(ids) == "DON'T STOP"
    assert tok.vocab_size == 29
    assert tokenizer_from_dict(tok.to_dict()).encode("A B") == tok.encode("A B")


def test_unknown_characters_are_reported():
    tok = CharTokenizer()
    assert tok.unknown_chars("HELLO 42") == {"4", "2"}
    with pytest.raises(KeyError):
        tok.encode("42")
