import pytest

from asr.text import BLANK, CharTokenizer, normalize, tokenizer_from_dict


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("Hello,  world -- it's 5pm!", "HELLO WORLD IT'S 5PM"),
        ("Café déjà vu", "CAFE DEJA VU"),
        ("'quoted' words", "QUOTED WORDS"),
        ("well-known\tfact\n", "WELL KNOWN FACT"),
        ("MR. SMITH'S DOG", "MR SMITH'S DOG"),
        ("", ""),
        ("?!...", ""),
    ],
)
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


def test_sentencepiece_tokenizer_round_trip_and_plain_data():
    import json

    from asr.text import SentencePieceTokenizer, build_tokenizer

    texts = ["THE CAT SAT ON THE MAT", "THE DOG'S BALL", "A CAT AND A DOG"] * 30
    tok = build_tokenizer({"kind": "bpe", "vocab_size": 40}, texts)
    assert isinstance(tok, SentencePieceTokenizer)
    ids = tok.encode("THE CAT AND THE DOG'S MAT")
    assert BLANK not in ids and max(ids) < tok.vocab_size
    assert tok.decode(ids) == "THE CAT AND THE DOG'S MAT"
    assert "".join(tok.token_text(i) for i in ids).strip() == "THE CAT AND THE DOG'S MAT"
    data = tok.to_dict()
    again = tokenizer_from_dict(json.loads(json.dumps(data)))  # survives as plain data
    assert again.encode("THE CAT") == tok.encode("THE CAT") and again.vocab_size == tok.vocab_size
    assert tok.unknown_chars("THE ZEBRA") == {"Z", "B", "R"} - tok.chars
    with pytest.raises(KeyError):
        tok.encode("ZZZ QQQ")


def test_unknown_tokenizer_kind_is_refused():
    from asr.text import build_tokenizer

    with pytest.raises(ValueError, match="tokenizer kind 'wordpiece'"):
        build_tokenizer({"kind": "wordpiece"}, [])
