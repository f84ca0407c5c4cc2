"""Training: everything `asr train` needs beyond the inference model. Nothing outside this package
imports it, so transcribing never loads PyTorch Lightning."""
