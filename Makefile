# glmcourse: two commands from a fresh clone to a running course.
#
#   make lab      set up .venv (once), then serve your workspace work/ (copies of the lessons) in JupyterLab
#   make lab-zh   the same for the Chinese edition: work/zh/, with the JupyterLab interface in 中文
#   make reset-lesson L=01 [EDITION=zh]   put the course's version of a lesson back (yours kept beside it)
#   make hub      a JupyterHub for a class on this machine (class list: HUB_USERS=class.txt); hub-collect
#   make test     set up .venv (once), then unit tests + every notebook under nbval (fast mode, both cores)
#   make lock     regenerate requirements/lock.txt from pyproject.toml's ranges and print what changed
#   make course   run every notebook in learner mode; table of wall time and peak RSS
#   make bench    performance figures, each with its unit
#   make doctor   check the environment ([OK]/[FAIL] lines with the fix for each FAIL)
#   make check-lab  start `make lab`'s and `make lab-zh`'s servers on free ports, check they answer, stop them
#   make e2e      the browser tests: JupyterLab lessons 01-03, the web demo, and the class hub with two students
#   make grade SUBMISSIONS=folder [OUT=runs/grades]   run a class's notebooks; grades.csv + report.html
#   make site     a static HTML site of the executed lessons, English and 中文, in runs/site/

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The set-up is redone only when the lock or pyproject.toml changes (or the stamp is deleted).
STAMP := $(VENV)/.glmcourse-installed
LOCK := requirements/lock.txt
# torch is installed first, pinned, on its own: which build pip takes depends on the machine and the
# index (PyPI's Linux wheel is a CUDA build of several GB; README "Set-up downloads"). The lock holds
# everything else, exact versions for Python 3.10-3.13, and pyproject's `torch>=...` is then satisfied.
TORCH_VERSION := 2.13.0
# Packages that only torch's CUDA build needs: `make lock` leaves them out, since torch's own install
# brings them where (and only where) they belong.
TORCH_RUNTIME := ^(nvidia-[a-z0-9-]+|cuda-[a-z-]+|triton)==
# Left out on purpose: rfc3987-syntax (and lark, which only it needs) come with jsonschema's "format-nongpl" extra
# that jupyter-events asks for. It builds a lark parser when jsonschema is imported: about 2.5 s in every process
# that reads a notebook or serves Jupyter (pytest, jupyter-lab, the grader, the site). Without it jsonschema skips
# the "iri" format check only, which nothing in Jupyter's event schemas or the course relies on.
NOT_INSTALLED := --no-emit-package rfc3987-syntax --no-emit-package lark
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --extra dev --extra web --extra hub --universal --python-version 3.10 \
	--no-emit-package torch $(NOT_INSTALLED) --custom-compile-command "make lock" --quiet $(LOCK_ARGS)

LAB_PORT ?= 8888
LAB_ARGS ?=
# The learner's workspace (git-ignored): the lessons are copied here on first use and the lab serves it,
# so the committed notebooks never change. A course update is brought in by the next `make lab`.
WORKSPACE ?= work
WORKSPACE_CMD = $(BIN)/python -m glmcourse.workspace
# Jupyter refuses to run as root unless told (containers, CI); ordinary users never need it.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
# The folder served and any extra JupyterLab options; `lab-zh` sets both for itself (see below).
# The workspace's links to glmcourse/ and notebooks/solutions/ are served read-only (workspace_contents).
LAB_ROOT_DIR = $(WORKSPACE)
LAB_APP_ARGS =
LAB_CMD = $(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) \
	--ServerApp.port_retries=0 --ServerApp.root_dir=$(LAB_ROOT_DIR) --ServerApp.open_browser=False $(ALLOW_ROOT) \
	--ServerApp.contents_manager_class=glmcourse.workspace_contents.WorkspaceContentsManager \
	$(LAB_APP_ARGS) $(LAB_ARGS)

# Tests: fast mode, nothing may touch the network. One torch thread per process: the two pytest-xdist
# workers (and their notebook kernels) already fill both cores, and OpenMP threads spinning on a busy core
# made a fast-mode training cell 10x slower (05's cell 9: 252 s with the default threads, 28 s with one).
TEST_ENV := GLMCOURSE_FAST=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
	HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False PYTHONHASHSEED=0 OMP_NUM_THREADS=1
NBVAL_SANITIZE := tests/nbval_sanitize.cfg
NBVAL_ARGS := --nbval-lax --nbval-current-env --nbval-cell-timeout=300 \
	--nbval-sanitize-with $(NBVAL_SANITIZE) --ignore=notebooks/solutions -p no:cacheprovider

# Debian's chromium for the browser tests (Playwright drives it and never downloads a browser):
# installed when missing and this runs as root; otherwise those tests are skipped and say how to get it.
define ENSURE_CHROMIUM
command -v chromium >/dev/null || { \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "notice: could not install chromium; the browser tests will be skipped"; \
	else echo "notice: no chromium, so the browser tests are skipped (sudo apt-get install chromium)"; fi; }
endef
BROWSER_TESTS := tests/test_lab_browser.py tests/test_web_demo.py tests/test_site.py

.PHONY: help setup browser lock lab lab-zh lab-port reset-lesson hub hub-deps hub-collect test unit nbval course bench doctor check-lab e2e grade site clean-runs

help:
	@sed -n '3,16p' Makefile | sed 's/^# \{0,1\}//'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Exactly the lock, with uv at the lock's own uv pin: the same pins pip would install (no resolver choices
# left: --no-deps), downloaded in parallel; uv does not read pip's configuration, so a mirror given as
# PIP_INDEX_URL is passed on. Then torch: pip picks the wheel, since pip's configuration is what knows the
# machine's own torch build (a local CPU wheel, a CPU-only index: README "Set-up downloads"), and uv installs it
# (9 s against pip's 32 s here); a torch $(TORCH_VERSION) already installed is kept. Its dependencies are in the lock,
# except a CUDA build's runtime, which uv adds. Then the course itself; `uv pip check` (pip's check: 0.3 s against
# 4 s) fails the set-up if the lock is incomplete. The .pyc files are written here, once (uv's --compile-bytecode on
# every core; compileall for the course's own modules): the grader's kernels see .venv read-only, and where
# PYTHONDONTWRITEBYTECODE is set no process keeps what it compiles, so each would compile again at every start.
PIP_INSTALL = $(BIN)/python -m pip install --quiet --disable-pip-version-check
UV_PIN = $(shell grep -m1 -oE '^uv==[^ ;]+' $(LOCK) 2>/dev/null)
UV_INSTALL = $(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode \
	$(if $(PIP_INDEX_URL),--default-index '$(PIP_INDEX_URL)')
TORCH_WHEEL_DIR := $(VENV)/.torch-wheel
HAS_TORCH = $(BIN)/python -c "import importlib.metadata as m, sys; sys.exit(m.version('torch').split('+')[0] != '$(TORCH_VERSION)')"
$(STAMP): $(LOCK) pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) $(UV_PIN)
	$(UV_INSTALL) --no-deps -r $(LOCK)
	@if $(HAS_TORCH) 2>/dev/null; then echo "torch $(TORCH_VERSION) is installed already: kept"; else \
		set -x; rm -rf $(TORCH_WHEEL_DIR) && \
		$(BIN)/python -m pip download --quiet --disable-pip-version-check --no-deps --dest $(TORCH_WHEEL_DIR) \
			torch==$(TORCH_VERSION) && \
		$(UV_INSTALL) $(TORCH_WHEEL_DIR)/torch-*.whl && rm -rf $(TORCH_WHEEL_DIR); fi
	$(UV_INSTALL) --no-deps -e .
	$(BIN)/python -m compileall -q -j 0 -x '/course_model/' glmcourse notebooks/solutions >/dev/null
	$(BIN)/uv pip check --quiet --python $(BIN)/python
	@touch $@
	@echo "environment ready in $(VENV)"

setup: $(STAMP)

# Debian's chromium for the browser tests (see ENSURE_CHROMIUM); `make test` runs this beside the set-up.
browser:
	@$(ENSURE_CHROMIUM)

# The path to newer versions: `make lock`, then `make test`, then commit pyproject.toml and the lock together.
# Pins that still fit the ranges are kept; `make lock LOCK_ARGS=--upgrade` (or --upgrade-package NAME) moves them.
# Resolved twice: the first pass finds the CUDA runtime that torch's PyPI wheel names, the second leaves it out.
lock: | $(BIN)/python
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet '$(or $(UV_PIN),uv)'
	@mkdir -p requirements; old=$$(mktemp); new=$$(mktemp); \
	if [ -f $(LOCK) ]; then cp $(LOCK) $$old; fi; \
	$(UV_COMPILE) -o $$new && \
	runtime=$$(grep -oE '$(TORCH_RUNTIME)' $$new | cut -d= -f1 | sort -u | sed 's/^/--no-emit-package /'); \
	$(UV_COMPILE) $$runtime -o $(LOCK) && \
	changed=$$(diff <(grep -E '^[A-Za-z0-9]' $$old) <(grep -E '^[A-Za-z0-9]' $(LOCK)) | grep -E '^[<>]' \
		| sed -e 's/^</  removed:/' -e 's/^>/  added:  /'); echo "$${changed:-  no pin changed}"; \
	echo "$(LOCK): $$(grep -cE '^[A-Za-z0-9]' $(LOCK)) pins; next: make test, then commit pyproject.toml and $(LOCK) together"; \
	rm -f $$old $$new


# An impossible or busy LAB_PORT is refused in one line before anything starts (stdlib only: no .venv needed).
lab-port:
	@$(PYTHON) -m glmcourse.workspace check-port '$(LAB_PORT)'

lab: lab-port $(STAMP)
	@$(WORKSPACE_CMD) sync --dir '$(WORKSPACE)'
	$(LAB_CMD)

# The Chinese edition. The interface language comes from lab-zh/settings/overrides.json (locale zh_CN,
# the jupyterlab-language-pack-zh-cn dependency), a new default for the translation plugin: this server
# reads it as its application settings directory; `make lab` keeps the installed one. A language the
# learner picks in Settings > Language is a user setting and still wins, as in any JupyterLab.
lab-zh: LAB_ROOT_DIR = $(WORKSPACE)/zh
lab-zh: LAB_APP_ARGS = --LabApp.app_settings_dir='$(CURDIR)/lab-zh/settings'
lab-zh: lab-port $(STAMP)
	@$(WORKSPACE_CMD) sync --edition zh --dir '$(WORKSPACE)'
	$(LAB_CMD)

# Restore one lesson of your workspace to the course's version; your copy is kept as NAME.mine.ipynb.
EDITION ?= en
reset-lesson: $(STAMP)
	@test -n "$(L)" || { echo "usage: make reset-lesson L=01 [EDITION=zh]"; exit 2; }
	@$(WORKSPACE_CMD) reset '$(L)' --edition '$(EDITION)' --dir '$(WORKSPACE)'

# A class hub (JupyterHub) on this machine: the class list is a file of user names, one a line; each
# student signs up once (sets a password), then works in hub-data/students/NAME/. See README "A class hub".
# The proxy comes from npm (package-lock.json), installed into node_modules/ by hub-deps.
HUB_USERS ?= class.txt
HUB_PORT ?= 8000
HUB_DATA ?= hub-data
HUB_MEMORY ?= 2G
HUB_ARGS ?=
HUB_SUBMISSIONS ?= runs/class-submissions
NODE_STAMP := node_modules/.glmcourse-installed

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "error: npm not found; install Node.js 20 or newer (Debian: sudo apt-get install npm)"; exit 2; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

hub-deps: $(NODE_STAMP)

hub: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m glmcourse.hub serve --users '$(HUB_USERS)' --port '$(HUB_PORT)' --data '$(HUB_DATA)' \
		--memory-limit '$(HUB_MEMORY)' $(HUB_ARGS)

# Instructors: every student's changed lessons into HUB_SUBMISSIONS/NAME/, then grade them.
hub-collect: $(STAMP)
	$(BIN)/python -m glmcourse.hub collect --data '$(HUB_DATA)' --out '$(HUB_SUBMISSIONS)'
	@echo "next: make grade SUBMISSIONS=$(HUB_SUBMISSIONS)"


# Unit tests and nbval over every notebook in one pytest run, spread over the cores (pytest-xdist):
# --dist loadfile keeps each notebook's cells, and each test file, on one worker, in order; the slowest files
# go first (tests/conftest.py's SLOWEST_FIRST; xdist's own reorder, by test count, would put them last).
XDIST ?= -n 2 --dist loadfile --no-loadscope-reorder
# The Python set-up and the browser's install (apt, on a fresh machine run as root) go side by side.
test:
	@$(MAKE) --no-print-directory -j2 $(STAMP) browser
	@export $(TEST_ENV); $(BIN)/python -m pytest -q -rs $(XDIST) $(NBVAL_ARGS) tests notebooks; code=$$?; \
	echo "make test: pytest exit $$code"; exit $$code

unit: $(STAMP)
	export $(TEST_ENV); $(BIN)/python -m pytest -q tests

nbval: $(STAMP)
	export $(TEST_ENV); $(BIN)/python -m pytest -q $(NBVAL_ARGS) notebooks

# Learner mode (GLMCOURSE_FAST unset), into runs/course/ so the committed notebooks stay as they are.
# `make course NB=02_quantization.ipynb` re-measures one notebook and keeps the others' rows.
course: $(STAMP)
	env -u GLMCOURSE_FAST HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
		$(BIN)/python -m glmcourse.tools.nbtools course --notebooks-dir notebooks \
		--out-dir runs/course --results docs/course_times.json $(NB)

bench: $(STAMP)
	$(BIN)/python -m glmcourse.bench

doctor: $(STAMP)
	$(BIN)/python -m glmcourse doctor

check-lab: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_lab.py

# The browser tests alone (they also run in `make test`), and the class hub's end-to-end test (e2e only).
e2e: $(STAMP) $(NODE_STAMP) browser
	export $(TEST_ENV) GLMCOURSE_HUB_E2E=1; $(BIN)/python -m pytest -q -rs $(BROWSER_TESTS) tests/test_hub_e2e.py

# Instructors: grade a folder of students' notebooks (one file or one subfolder per student).
OUT ?= runs/grades
GRADE_ARGS ?=
grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=path/to/class [OUT=runs/grades] [GRADE_ARGS='--jobs 2']"; exit 2; }
	env -u GLMCOURSE_FAST HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
		$(BIN)/python -m glmcourse.tools.grade "$(SUBMISSIONS)" --out "$(OUT)" $(GRADE_ARGS)

# The executed lessons as a static site (nothing is executed): open runs/site/index.html.
site: $(STAMP)
	$(BIN)/python -m glmcourse.tools.site --out runs/site

clean-runs:
	rm -rf runs/course
