"""From emissions to text. Greedy (best path) decoding; beam search with an LM joins here later."""
import torch

from asr.text import BLANK


def greedy_ids(logits: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """(B, T, V) logits, (B,) lengths -> token ids per utterance, repeats merged and blanks dropped."""
    best = logits.argmax(-1).cpu()  # (B, T)
    lengths = lengths.cpu().tolist()
    out = []
    for row, n in zip(best, lengths):
        row = row[:n]
        keep = torch.ones_like(row, dtype=torch.bool)
        keep[1:] = row[1:] != row[:-1]  # CTC: a run of the same token is one token
        out.append([t for t in row[keep].tolist() if t != BLANK])
    return out


def greedy_decode(logits: torch.Tensor, lengths: torch.Tensor, tokenizer) -> list[str]:
    """(B, T, V) logits -> one string per utterance."""
    return [" ".join(tokenizer.decode(ids).split()) for ids in greedy_ids(logits, lengths)]
