# Two commands do everything: `make run` and `make test` create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision builds: these versions install from this project's machines' local disk.
# On a GPU machine, install the CUDA build matching your driver instead (see README).
TORCH ?= torch==2.14.1 torchvision==0.29.1
# Where scripts/build_mmcv.sh keeps the mmcv wheel it builds once per machine (~12 min).
WHEELHOUSE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/bench-wheels

.PHONY: run test clean-env

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade "pip>=23" >/dev/null
	$(PY) -m pip install $(TORCH) -e ".[neural,test]"
	touch $@

# The OpenMMLab extra, for the test suite: mmcv's compiled ops are built from the sdist once
# (scripts/build_mmcv.sh), then everything is installed again in one resolver pass.
$(VENV)/.openmmlab: $(VENV)/.installed scripts/build_mmcv.sh
	$(PY) -m pip install "setuptools==80.9.0" ninja wheel
	scripts/build_mmcv.sh $(VENV) $(WHEELHOUSE)
	$(PY) -m pip install --find-links $(WHEELHOUSE) --only-binary mmcv $(TORCH) -e ".[neural,test,ray,openmmlab]" \
		-e examples/plugins/bench-jpeg2000 -e examples/plugins/bench-balanced
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/bench run --grid codecs.yaml

test: $(VENV)/.openmmlab
	scripts/ensure_chromium.sh
	$(PY) -m pytest -q

clean-env:
	rm -rf $(VENV)
