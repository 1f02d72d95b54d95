# dmcmc_edu -- two commands for a fresh clone:
#   make demo   creates .venv, installs the package with its extras, runs the 2D demo and the fast ladder (runs/demo)
#   make test   same venv; the import contracts (import-linter), unit tests (with the assignments' nbgrader
#               round trip), every walkthrough and assignment notebook under nbval, then the browser test
#   make lab          JupyterLab on the notebooks (the walkthroughs, in course order, and the explorers)
#   make assignments  the students' versions of the assignments (nbgrader) -> notebooks/assignments/release/
#   make roster ROSTER=students.csv                  import the class list into the course's gradebook (nbgrader)
#   make grade SUBMISSIONS=DIR [GRADES=grades.csv]   autograde returned notebooks (DIR/<student>/<assignment>/...)
#   make feedback     one HTML file per student and assignment -> notebooks/assignments/feedback/<student>/<a>/<a>.html
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision pinned for this project's machines (a local wheel); users elsewhere may override, e.g.
#   make test TORCH_SPEC="torch torchvision"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= test,diffusers,fid,assignments,explorers,browser
SUBMISSIONS ?=
ROSTER ?=
GRADES ?= grades.csv
CHROMIUM ?= /usr/bin/chromium
# test processes (pytest-xdist; a test file or notebook stays in one process); the CI machine has 2 cores
JOBS ?= 2
XDIST := -n $(JOBS) --dist loadfile
export OMP_NUM_THREADS ?= 1

.PHONY: demo test unit notebooks browser-test lab assignments roster grade feedback lint install clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	$(PY) -m pip install --quiet --no-deps k-diffusion==0.1.1.post1 torchsde torchdiffeq trampoline
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m dmcmc_edu demo --out runs/demo
	$(PY) -m dmcmc_edu ladder --target ring --fast --out runs/demo/ladder

test: unit notebooks browser-test

unit: $(VENV)/.installed
	$(VENV)/bin/lint-imports
	$(PY) -m pytest tests -q $(XDIST)

notebooks: $(VENV)/.installed
	$(PY) -m pytest --nbval notebooks/*.ipynb -q -p no:cacheprovider $(XDIST)
	$(PY) -m pytest --nbval-lax notebooks/assignments/source -q -p no:cacheprovider $(XDIST)

# JupyterLab + headless Chromium (Debian's package) drive the explorers notebook; screenshots in runs/browser/
browser-test: $(VENV)/.installed
	@test -x $(CHROMIUM) || { echo "error: $(CHROMIUM) not found (Debian: apt-get install chromium)"; exit 2; }
	DMCMC_BROWSER_TEST=1 CHROMIUM=$(CHROMIUM) $(PY) -m pytest tests/browser -q -p no:cacheprovider

lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks

assignments: $(VENV)/.installed
	$(PY) -m dmcmc_edu assignments release --course notebooks/assignments

# re-grading keeps the earlier $(GRADES) beside it (grades.<time>.csv) and warns for each grade it replaces;
# each student's kernel runs in a bubblewrap sandbox (apt-get install bubblewrap); DMCMC_EDU_SANDBOX=plain grades
# without it, for trusted notebooks only (notebooks/assignments/README.md)
grade: $(VENV)/.installed
	@test -n "$(SUBMISSIONS)" || { echo "error: make grade needs SUBMISSIONS=DIR (DIR/<student>/<assignment>/<assignment>.ipynb)"; exit 2; }
	$(PY) -m dmcmc_edu assignments grade --course notebooks/assignments --submissions $(SUBMISSIONS) --out $(GRADES) \
		--overwrite

# the roster (a CSV with a column id; notebooks/assignments/students.example.csv): only its students are graded
roster: $(VENV)/.installed
	@test -n "$(ROSTER)" || { echo "error: make roster needs ROSTER=FILE.csv (columns id,first_name,last_name,email)"; exit 2; }
	@test -f "$(ROSTER)" || { echo "error: $(ROSTER): no such file"; exit 2; }
	cd notebooks/assignments && PATH="$(abspath $(VENV))/bin:$$PATH" nbgrader db student import "$(abspath $(ROSTER))"

# feedback to return: one HTML file per graded student and assignment (nbgrader generate_feedback)
feedback: $(VENV)/.installed
	$(PY) -m dmcmc_edu assignments feedback --course notebooks/assignments

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check dmcmc_edu tests bench

clean-venv:
	rm -rf $(VENV)

# mutation run over the assignments' model answers: do single-line changes lose points? (bench/results/grading_mutants)
.PHONY: mutants
mutants: $(VENV)/.installed
	$(PY) bench/grading_mutants.py --out bench/results/grading_mutants
