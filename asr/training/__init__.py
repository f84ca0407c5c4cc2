"""Training: everything `asr train` needs beyond the inference model. Nothing on the inference path
(loading, transcribing, evaluating) imports it, so transcribing never loads PyTorch Lightning."""
