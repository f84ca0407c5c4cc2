"""`ModelDims`: what a model is, in one typed place, and the one home of every model default.

The run config's features/model sections name these fields (asr.config takes its defaults from here);
`asr.training.module.model_dims` builds one from a config; `asr.model.ASRModel` is built from it alone;
every checkpoint and exported model.json carries it as plain data. No torch here: the runtime reads it too.
"""

import dataclasses
from dataclasses import dataclass

from asr.errors import ASRError


@dataclass(frozen=True)
class ModelDims:
    vocab_size: int  # output tokens, CTC blank included (the tokenizer's size)
    # The input chain (asr.features.Frontend), part of what the weights were trained on:
    n_mels: int = 80
    dynamic_range_db: float = 80.0  # log floor below each utterance's peak
    taper_ms: float = 10.0  # fade each utterance's edges: a clip cut mid-sound otherwise ends in a click
    edge_pad_ms: float = 0.0  # silence around each utterance that the network hears and CTC does not score
    normalize: str = "per_bin"  # per_bin: CMVN per mel bin; per_utterance: one mean and variance for all bins
    # The network (asr.model.BiLSTMCTC):
    subsample: str = "stack"  # stack | conv
    subsample_factor: int = 4
    hidden: int = 320  # LSTM units per direction
    layers: int = 3
    dropout: float = 0.1
    merge: str = "concat"  # how a layer joins its two directions: concat (2H values) | sum (H)
    char_ctc_layer: int = 0  # > 0: a character CTC head on that layer (hierarchical CTC; trained, never decoded)
    char_vocab_size: int = 0  # that head's outputs

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, where: str = "model description") -> "ModelDims":
        """Plain data (a checkpoint's or model.json's) -> ModelDims; an unknown or missing key is an ASRError."""
        if not isinstance(values, dict):
            raise ASRError(f"{where}: expected a mapping, got {type(values).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ASRError(f"{where}: unknown field(s) {', '.join(unknown)} (written by a newer asr?)")
        if "vocab_size" not in values:
            raise ASRError(f"{where}: no vocab_size")
        return cls(**values)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


def with_dims(description: dict, version: int) -> dict:
    """A description as checkpoint format 2 and model.json format 1 wrote it, ModelDims' fields held as
    {"model_args": {"frontend": {...}, "network": {...}}} -> the same description with "dims", as `version`."""
    args = description["model_args"]
    rest = {k: v for k, v in description.items() if k != "model_args"}
    return {**rest, "format": version, "dims": {**args["frontend"], **args["network"]}}
