# dmcmc_edu -- two commands for a fresh clone:
#   make demo   creates .venv, installs the package with its extras, runs the 2D demo and the fast ladder (runs/demo)
#   make test   same venv; the import contracts (import-linter), unit tests, then every notebook under nbval
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision pinned for this project's machines (a local wheel); users elsewhere may override, e.g.
#   make test TORCH_SPEC="torch torchvision"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= test,diffusers,fid
export OMP_NUM_THREADS ?= 1

.PHONY: demo test unit notebooks lint install clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m dmcmc_edu demo --out runs/demo
	$(PY) -m dmcmc_edu ladder --target ring --fast --out runs/demo/ladder

test: unit notebooks

unit: $(VENV)/.installed
	$(VENV)/bin/lint-imports
	$(PY) -m pytest tests -q

notebooks: $(VENV)/.installed
	$(PY) -m pytest --nbval notebooks -q -p no:cacheprovider

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check dmcmc_edu tests bench

clean-venv:
	rm -rf $(VENV)
