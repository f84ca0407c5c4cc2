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
