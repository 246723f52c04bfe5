# Two commands matter: `make run` (set up, then boot Exo-OS) and `make test`
# (set up, then run the checks and the whole test suite). Both are idempotent.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# swtpm, tpm2-tools, softhsm2: the security core's TPM and HSM for development;
# libtss2-dev and pkg-config: tpm2-pytss builds against the TSS from source.
APT_PACKAGES := bubblewrap tmux libseccomp2 gcc swtpm swtpm-tools tpm2-tools libtss2-dev pkg-config softhsm2 wireguard-go wireguard-tools
# espeak-ng and sox: the assistant's voice (speech out, audio conversion; exo.agents.voice).
APT_PACKAGES += espeak-ng sox
# The everyday programs the README shows in the Exo shell, through the powerbox.
APT_PACKAGES += nano less diffutils findutils
# The real applications of POSIX-X's system tests and benchmark
# (tests/system/test_posix_x_apps.py, bench/posix_x.py); nothing else needs them.
POSIX_X_APPS := nginx redis-server redis-tools wrk postgresql curl strace

.PHONY: run test setup system-deps posix-x-apps lint typecheck unit bench clean docs

run: setup
	@$(VENV)/bin/exo boot

test: setup posix-x-apps lint typecheck
	$(PY) -m pytest -q

# docs/syscalls.md is generated from the syscall table (exo.abi.syscalls).
docs: setup
	$(PY) -m exo.abi.syscalls --markdown > docs/syscalls.md

# Byte-compile our sources every time (cheap when up to date): with
# PYTHONDONTWRITEBYTECODE set, as on some hosts, Python would otherwise recompile
# every module at every start, which more than doubles the boot time.
setup: system-deps $(VENV)/.stamp-install
	@$(PY) -m compileall -q src bench
	@$(PY) -m exo.agents.intent >/dev/null  # train the intent model once, cached (exo.agents.intent.model)

# Debian packages, installed only when missing and only when we are root.
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: missing Debian packages (need root to install):$$missing"; fi; \
	fi
endef

system-deps:
	$(call apt_install,$(APT_PACKAGES))

posix-x-apps:
	$(call apt_install,$(POSIX_X_APPS))

$(VENV)/.stamp-install: pyproject.toml setup.py $(wildcard src/exo/*.c src/exo/*/*.c src/exo/*/*.h)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -e '.[dev,bench]'
	@touch $@

lint: setup
	$(VENV)/bin/ruff check src tests bench fuzz

typecheck: setup
	$(VENV)/bin/mypy

unit: setup
	$(PY) -m pytest -q tests/unit

bench: setup posix-x-apps
	@for b in bench/*.py; do \
	  if grep -q -- '--quick' $$b; then $(PY) $$b --quick || exit 1; else $(PY) $$b || exit 1; fi; \
	done

clean:
	rm -rf $(VENV) build src/*.egg-info
	find src -name '*.so' -delete
