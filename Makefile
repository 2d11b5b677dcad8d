# Two commands do everything: `make run` and `make test` create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision builds: these versions install from this project's machines' local disk.
# On a GPU machine, install the CUDA build matching your driver instead (see README).
TORCH ?= torch==2.14.1 torchvision==0.29.1

.PHONY: run test clean-env

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade "pip>=23" >/dev/null
	$(PY) -m pip install $(TORCH) -e ".[neural,test]"
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/bench run --grid codecs.yaml

test: $(VENV)/.installed
	$(PY) -m pytest -q

clean-env:
	rm -rf $(VENV)
