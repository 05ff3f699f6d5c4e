# Two commands do all the set-up on a fresh machine (Python 3.11):
#   make finetune   the book's §16.7 run (downloads bert.small and SNLI)
#   make test       the test suite
# Both create .venv with the CPU build of MXNet first. For the GPU build (CUDA 11 + NVIDIA
# driver): make finetune MXNET=gpu   (never install both builds in one environment).
PYTHON ?= python3
MXNET ?= cpu
VENV := .venv
PY := $(VENV)/bin/python

$(VENV)/.installed-$(MXNET): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(MXNET),test]'
	touch $@

install: $(VENV)/.installed-$(MXNET)

finetune: install
	$(PY) -m gluon_bertft finetune $(ARGS)

demo: install
	$(PY) -m gluon_bertft finetune --train data/snli_sample.jsonl --pretrained random \
	    --epochs 3 --batch-size 32 --out runs/demo

test: install
	$(PY) -m pytest -q -W ignore::DeprecationWarning tests $(ARGS)

.PHONY: install finetune demo test
