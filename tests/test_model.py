import pytest
import torch

from asr.model import BiLSTMCTC


@pytest.mark.parametrize("subsample,factor", [("stack", 4), ("stack", 2), ("conv", 4)])
def test_padded_batch_equals_each_utterance_alone(subsample, factor):
    """The backward LSTM must start at each utterance's own end, never on padding."""
    torch.manual_seed(0)
    model = BiLSTMCTC(vocab_size=29, n_mels=80, subsample=subsample, subsample_factor=factor, hidden=32, layers=2).eval()
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
    model = BiLSTMCTC(vocab_size=29, hidden=16, layers=1, subsample_factor=4)
    logits, lens = model(torch.randn(2, 101, 80), torch.tensor([101, 57]))
    assert logits.shape == (2, 26, 29)
    assert lens.tolist() == [26, 15]
    assert model.subsample.output_lengths(torch.tensor([101, 57])).tolist() == [26, 15]


@pytest.mark.parametrize("subsample,factor", [("stack", 4), ("stack", 2), ("conv", 4)])
def test_edge_padding_is_heard_but_not_scored(subsample, factor):
    """features.edge_pad_ms: silence the network reads around each utterance, whose output frames are
    cut off again, so frame counts (CTC, word times, long-file windows) are those of the real audio."""
    from asr.config import DEFAULTS, merge
    from asr.lightning import CTCModule
    from asr.text import build_tokenizer

    torch.manual_seed(0)
    modules = []
    for pad_ms in (0.0, 50.0):
        config = merge(DEFAULTS, {"features": {"edge_pad_ms": pad_ms},
                                  "model": {"subsample": subsample, "subsample_factor": factor, "hidden": 16, "layers": 2}})
        modules.append(CTCModule(config, build_tokenizer({"kind": "char"}, [])).eval())
    plain, padded = modules
    padded.load_state_dict(plain.state_dict())
    assert padded.pad_samples >= 800 and padded.pad_samples % (160 * factor) == 0  # >= 50 ms, whole frames
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
