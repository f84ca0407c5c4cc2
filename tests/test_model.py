import pytest
import torch

from asr.model import BiLSTMCTC, ModelDims


@pytest.mark.parametrize(
    "subsample,factor,merge",
    [("stack", 4, "concat"), ("stack", 2, "concat"), ("conv", 4, "concat"), ("stack", 4, "sum")],
)
def test_padded_batch_equals_each_utterance_alone(subsample, factor, merge):
    """The backward LSTM must start at each utterance's own end, never on padding."""
    torch.manual_seed(0)
    model = BiLSTMCTC(
        ModelDims(
            vocab_size=29, n_mels=80, subsample=subsample, subsample_factor=factor, hidden=32, layers=2, merge=merge
        )
    ).eval()
    lengths = torch.tensor([97, 64, 33])
    feats = torch.randn(3, 97, 80) * (torch.arange(97)[None, :, None] < lengths[:, None, None])
    with torch.no_grad():
        batch_out, out_lens = model(feats, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone, alone_len = model(feats[i : i + 1, :n], lengths[i : i + 1])
            assert alone_len.item() == out_lens[i].item() == alone.shape[1]
            assert torch.allclose(batch_out[i, : out_lens[i]], alone[0], atol=1e-5)


def test_unpacked_lstm_would_differ():
    """Guards the test above: without packing, padding leaks into the backward direction."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(8, 8, bidirectional=True, batch_first=True).eval()
    x = torch.randn(1, 10, 8)
    padded = torch.cat([x, torch.zeros(1, 5, 8)], dim=1)
    assert not torch.allclose(lstm(x)[0], lstm(padded)[0][:, :10], atol=1e-5)


def test_output_lengths_and_shapes():
    model = BiLSTMCTC(ModelDims(vocab_size=29, hidden=16, layers=1, subsample_factor=4))
    logits, lens = model(torch.randn(2, 101, 80), torch.tensor([101, 57]))
    assert logits.shape == (2, 26, 29)
    assert lens.tolist() == [26, 15]
    assert model.subsample.output_lengths(torch.tensor([101, 57])).tolist() == [26, 15]


def test_summed_directions_halve_the_layer_width():
    """model.merge=sum adds the two directions (as DeepSpeech 2 does): each layer hands on H values, not 2H."""
    torch.manual_seed(0)
    model = BiLSTMCTC(
        ModelDims(vocab_size=29, hidden=16, layers=2, merge="sum", char_ctc_layer=1, char_vocab_size=39)
    ).eval()
    assert model.lstm[1].fwd.input_size == 16 and model.proj.in_features == 16 and model.char_proj.in_features == 16
    feats, lengths = torch.randn(2, 101, 80), torch.tensor([101, 57])
    layer = model.lstm[0]
    x, sub_lens = model.subsample(feats, lengths)
    with torch.no_grad():
        concat = BiLSTMCTC(ModelDims(vocab_size=29, hidden=16, layers=2)).lstm[0]
        concat.load_state_dict(layer.state_dict())
        both = concat(x, sub_lens)  # (B, T', 2H): forward then backward
        assert torch.allclose(layer(x, sub_lens), both[..., :16] + both[..., 16:], atol=1e-6)
    with pytest.raises(ValueError, match="merge"):
        BiLSTMCTC(ModelDims(vocab_size=29, hidden=16, layers=2, merge="mean"))


@pytest.mark.parametrize("subsample,factor", [("stack", 4), ("stack", 2), ("conv", 4)])
def test_edge_padding_is_heard_but_not_scored(subsample, factor):
    """features.edge_pad_ms: silence the network reads around each utterance, whose output frames are
    cut off again, so frame counts (CTC, word times, long-file windows) are those of the real audio."""
    from asr.config import Config
    from asr.text import build_tokenizer
    from asr.training.module import CTCModule

    torch.manual_seed(0)
    modules = []
    for pad_ms in (0.0, 50.0):
        config = Config.from_dict(
            {
                "features": {"edge_pad_ms": pad_ms},
                "model": {"subsample": subsample, "subsample_factor": factor, "hidden": 16, "layers": 2},
            }
        )
        modules.append(CTCModule(config, build_tokenizer({"kind": "char"}, [])).eval())
    plain, padded = modules
    padded.load_state_dict(plain.state_dict())
    pad_samples = padded.model.frontend.pad_samples
    assert pad_samples >= 800 and pad_samples % (160 * factor) == 0  # >= 50 ms, whole frames
    assert padded.model.pad_frames * padded.model.frame_samples == pad_samples
    assert plain.model.frontend.pad_samples == 0 and plain.model.pad_frames == 0
    lens = torch.tensor([16000, 9000])
    audio = torch.randn(2, 16000) * 0.1 * (torch.arange(16000)[None, :] < lens[:, None])
    with torch.no_grad():
        (out_plain, lens_plain), (out_pad, lens_pad) = plain(audio, lens), padded(audio, lens)
        assert torch.equal(lens_plain, lens_pad)
        assert (out_plain[0] - out_pad[0, : out_plain.shape[1]]).abs().max() > 1e-3  # the silence was heard
        alone, alone_lens = padded(audio[1:, :9000], lens[1:])
        assert alone_lens.item() == lens_pad[1].item()
        assert alone.shape[1] == alone_lens.item()
        assert torch.allclose(alone[0], out_pad[1, : lens_pad[1]], atol=1e-5)


def test_char_head_reads_its_inner_layer():
    """model.char_ctc_layer: character logits from that layer's output; inference gets the main logits only."""
    torch.manual_seed(0)
    model = BiLSTMCTC(ModelDims(vocab_size=50, hidden=16, layers=3, char_ctc_layer=2, char_vocab_size=39)).eval()
    feats, lengths = torch.randn(2, 101, 80), torch.tensor([101, 57])
    with torch.no_grad():
        logits, lens, chars = model(feats, lengths, with_char_logits=True)
        assert logits.shape == (2, 26, 50) and chars.shape == (2, 26, 39) and lens.tolist() == [26, 15]
        assert len(model(feats, lengths)) == 2
        model.lstm[2].fwd.weight_hh_l0.add_(1.0)  # the top layer feeds the main head only
        logits2, _, chars2 = model(feats, lengths, with_char_logits=True)
    assert torch.equal(chars, chars2) and not torch.allclose(logits, logits2)
    with pytest.raises(ValueError, match="char_ctc_layer"):
        BiLSTMCTC(ModelDims(vocab_size=50, hidden=16, layers=3, char_ctc_layer=4, char_vocab_size=39))


def test_char_ctc_loss_joins_the_training_loss():
    """The training loss is (1 - w) * CTC(main) + w * CTC(characters), and both heads get gradients."""
    from asr.config import Config
    from asr.text import build_tokenizer
    from asr.training.module import CTCModule

    torch.manual_seed(0)
    config = Config.from_dict(
        {
            "model": {"hidden": 16, "layers": 2, "dropout": 0.0, "char_ctc_layer": 1, "char_ctc_weight": 0.3},
            "features": {"specaugment": {"freq_masks": 0, "time_masks": 0}},
        }
    )  # deterministic
    texts = ["HELLO WORLD", "IT'S 5 O'CLOCK"]
    tokenizer = build_tokenizer({"kind": "bpe", "vocab_size": 40}, texts * 20)
    module = CTCModule(config, tokenizer)
    module.log = lambda *args, **kwargs: None  # no Trainer attached
    ids = [tokenizer.encode(t) for t in texts]
    batch = {
        "audio": torch.randn(2, 32000) * 0.1,
        "audio_lens": torch.tensor([32000, 24000]),
        "targets": torch.nn.utils.rnn.pad_sequence([torch.tensor(i) for i in ids], batch_first=True),
        "target_lens": torch.tensor([len(i) for i in ids]),
        "ids": ["a", "b"],
        "texts": texts,
    }
    loss = module.training_step(batch, 0)
    logits, lens, chars = module(batch["audio"], batch["audio_lens"], with_char_logits=True)
    char_targets, char_lens = module.char_targets(texts)
    assert char_lens.tolist() == [len(t) for t in texts]  # digits and the apostrophe are in the head's alphabet
    expected = 0.7 * module.ctc_loss(logits, lens, batch["targets"], batch["target_lens"]) + 0.3 * module.ctc_loss(
        chars, lens, char_targets, char_lens
    )
    assert torch.allclose(loss, expected, atol=1e-5)
    loss.backward()
    network = module.model.network
    assert network.char_proj.weight.grad.abs().sum() > 0 and network.proj.weight.grad.abs().sum() > 0


def test_features_normalize_reaches_the_module_and_rejects_unknown_values():
    from asr.config import Config
    from asr.errors import ASRError
    from asr.text import build_tokenizer
    from asr.training.module import CTCModule

    def module(normalize):
        config = Config.from_dict({"features": {"normalize": normalize}, "model": {"hidden": 8, "layers": 1}})
        return CTCModule(config, build_tokenizer({"kind": "char"}, [])).eval()

    torch.manual_seed(0)
    per_bin, per_utterance = module("per_bin"), module("per_utterance")
    per_utterance.load_state_dict(per_bin.state_dict())
    audio, lens = torch.randn(1, 8000) * 0.1, torch.tensor([8000])
    with torch.no_grad():
        assert (per_bin(audio, lens)[0] - per_utterance(audio, lens)[0]).abs().max() > 1e-3
    with pytest.raises(ASRError, match="normalize must be per_bin or per_utterance, got 'per_word'"):
        module("per_word")
