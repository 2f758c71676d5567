# The one way to set up, test, benchmark and demo Imaginarium. Works on a fresh machine with Python 3.11.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Ray stays on loopback and starts no dashboard for local runs and tests.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-fast bench lint format install system-deps test-system-deps clean peers

# Debian packages the project needs, installed only when missing: offscreen GL (EGL with Mesa's
# software driver) so MuJoCo tasks render without a screen.
# The tests also need Debian's Chromium, to load the HTML report headless.
APT_INSTALL = if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

system-deps:
	@missing=""; \
	ldconfig -p | grep -q 'libEGL.so.1 ' || missing="$$missing libegl1"; \
	ldconfig -p | grep -q 'libEGL_mesa.so.0 ' || missing="$$missing libegl-mesa0"; \
	ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1 || missing="$$missing libgl1-mesa-dri"; \
	$(APT_INSTALL)

test-system-deps: system-deps
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	$(APT_INSTALL)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: system-deps $(STAMP)
	$(VENV)/bin/imaginarium demo --out demo

# Both tiers: the unit tests and the integration ones (training, Ray, Chromium, the experiments' smoke runs).
test: test-system-deps $(STAMP) peers
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	# CI's machine runs nothing else: torch's spinning threads (libgomp's default spin) are faster there than
	# the sleeping ones the package chooses for busy machines (imaginarium/threads.py)
	GOMP_SPINCOUNT=300000 $(VENV)/bin/pytest -m "not slow" -q

# The unit tier alone, in under a minute: what tests/conftest.py does not mark integration.
test-fast: system-deps $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest -m "not slow and not integration" -q

# mbrl-lib for bench_mbrl.py's side-by-side: its public release, without the old Gymnasium it pins
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[test,experiments]"
	$(PY) -m pip install -q --no-deps mbrl==0.2.0
	touch $@

bench: $(BENCH_STAMP)
	$(PY) experiments/bench.py

# d3rlpy for experiments/peers_study.py, in .venv-peers: it pins gymnasium==1.0.0, so it goes in --no-deps over ours.
PEERS := .venv-peers
peers: $(PEERS)/.installed

$(PEERS)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q --upgrade pip
	$(PEERS)/bin/python -m pip install -q -e .
	$(PEERS)/bin/python -m pip install -q --no-deps d3rlpy==2.8.1
	$(PEERS)/bin/python -m pip install -q gym==0.26.2 structlog colorama dataclasses-json scikit-learn
	$(PEERS)/bin/python -c "import d3rlpy, gymnasium, torch; assert tuple(map(int, gymnasium.__version__.split('.')[:2])) >= (1, 1); assert torch.__version__.startswith('2.13.')"
	touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) demo build *.egg-info .pytest_cache .ruff_cache
