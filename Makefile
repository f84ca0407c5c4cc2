# Quick start: `make demo` (synthesise a corpus, train, evaluate, transcribe) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_CKPT := runs/demo/checkpoints/best.ckpt

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

data/synth/corpus.json: | install
	$(BIN)/asr synth --out data/synth

DEMO_LM := data/synth/lm/train-3gram.arpa

demo: install data/synth/corpus.json
	$(BIN)/asr train --config configs/demo.yaml
	@echo "== greedy decoding, test split (unseen voices and sentences)"
	$(BIN)/asr evaluate --checkpoint $(DEMO_CKPT) --data data/synth/manifests/test.jsonl --out runs/demo/eval-test
	@echo "== beam search with a 3-gram LM built from the TRAINING transcripts only"
	$(BIN)/python scripts/build_arpa.py data/synth/manifests/train.jsonl --order 3 --out $(DEMO_LM)
	$(BIN)/asr evaluate --checkpoint $(DEMO_CKPT) --data data/synth/manifests/test.jsonl --out runs/demo/eval-test-lm \
	    --lm $(DEMO_LM) --lm-weight 0.5  # tuned on dev with `asr tune-lm` (RESULTS.md)
	@echo "== transcribe three test clips, with word times"
	$(BIN)/asr transcribe --checkpoint $(DEMO_CKPT) $$(ls data/synth/LibriSpeech/test/*/*/*.flac | head -n 3)
	$(BIN)/asr transcribe --checkpoint $(DEMO_CKPT) --format srt $$(ls data/synth/LibriSpeech/test/*/*/*.flac | head -n 1)

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf runs data/synth
