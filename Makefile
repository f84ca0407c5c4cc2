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

demo: install data/synth/corpus.json
	$(BIN)/asr train --config configs/demo.yaml
	$(BIN)/asr evaluate --checkpoint $(DEMO_CKPT) --data data/synth/manifests/test.jsonl --out runs/demo/eval-test
	$(BIN)/asr transcribe --checkpoint $(DEMO_CKPT) $$(ls data/synth/LibriSpeech/test/*/*/*.flac | head -n 3)

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf runs data/synth
