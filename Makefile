# analytics-svc: `make run` starts the demo service, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 4004
# make run serves a dev token: listen on loopback unless told otherwise.
HOST ?= 127.0.0.1
SIMULATOR ?= 1
# make run is a development server: one-click admin sign-in and a pre-filled viewer token.
ADMIN_DEV_LOGIN ?= 1
CHROMIUM := /usr/bin/chromium
NODE_DIR := tests/node

.PHONY: install port-free run test coverage lint format db clean system-nginx browser screenshots bench bench-full bench-smoke bench-render bench-install

## install: create .venv, install the pinned requirements and the Node test client (idempotent)
install: $(VENV)/.installed $(NODE_DIR)/node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

instance/jwt-secret:
	@mkdir -p instance
	@(umask 077 && $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(48))" > $@)

instance/secret-key:
	@mkdir -p instance
	@(umask 077 && $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(48))" > $@)

## browser: Debian's chromium for the browser tests (Playwright drives it; never `playwright install`)
browser:
	@test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

## db: create or migrate the database and seed the demo tenant
db: install instance/jwt-secret
	@export JWT_SECRET="$${JWT_SECRET:-$$(cat instance/jwt-secret)}"; \
	$(BIN)/flask --app wsgi db upgrade && $(BIN)/flask --app wsgi seed-demo

## port-free: fail with a hint when PORT is taken on HOST (make run checks it before anything else)
port-free:
	@if $(PYTHON) -c "import socket; socket.create_server(('$(HOST)', $(PORT))).close()" 2>&1 \
			| grep -q "Address already in use"; then \
		echo "port $(PORT) is in use: PORT=$$(($(PORT) + 1)) make run"; exit 1; \
	fi

## run: start the service on PORT (default 4004) with SQLite and the demo simulator
run: port-free db instance/secret-key
	@export JWT_SECRET="$${JWT_SECRET:-$$(cat instance/jwt-secret)}" HOST=$(or $(HOST),127.0.0.1) PORT=$(PORT) SIMULATOR=$(SIMULATOR); \
	export SECRET_KEY="$${SECRET_KEY:-$$(cat instance/secret-key)}" ADMIN_DEV_LOGIN=$(ADMIN_DEV_LOGIN); \
	token=$$($(BIN)/flask --app wsgi token --roles admin,ingest --lifetime 86400); \
	echo; \
	echo "analytics-svc on http://localhost:$(PORT)"; \
	echo "  Socket.IO namespaces: http://localhost:$(PORT)/dashboard  http://localhost:$(PORT)/analytics/dashboard"; \
	echo "  REST API:             http://localhost:$(PORT)/api/v1    health: http://localhost:$(PORT)/healthz"; \
	echo "  admin page:           http://localhost:$(PORT)/admin"; \
	echo "  live dashboard:       http://localhost:$(PORT)/dashboards/event/event-uuid-123"; \
	echo "  demo entity:          event-uuid-123 (type event), tenant demo"; \
	echo "  dev token (24 h, roles admin+ingest):"; \
	echo "$$token"; \
	echo; \
	echo "Stop it with Ctrl-C."; \
	echo; \
	exec $(BIN)/gunicorn -c gunicorn.conf.py

## lint: ruff check and format check
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## format: apply ruff's formatting and safe fixes
format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## system-nginx: install Debian's nginx for tests/test_nginx.py when it is missing (needs root)
# The test runs nginx itself, as its own child process, and never uses the package's service.
# Containers like CI's have Docker's policy-rc.d, so installing does not start that service;
# on a host with systemd it would (on port 80): install nginx there yourself if you want it.
system-nginx:
	@if [ ! -x /usr/sbin/nginx ]; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "nginx is not installed and this is not root: tests/test_nginx.py will skip"; exit 0; \
		fi; \
		echo "installing Debian's nginx for tests/test_nginx.py"; \
		apt_install="apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 nginx"; \
		DEBIAN_FRONTEND=noninteractive $$apt_install \
			|| { apt-get update -o DPkg::Lock::Timeout=300 && DEBIAN_FRONTEND=noninteractive $$apt_install; }; \
	fi

## test: lint, then the whole test suite against real servers
test: install system-nginx browser lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## coverage: the whole suite with line coverage of app/ in every process it starts (slower than make test)
coverage: install system-nginx browser
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/coverage combine -q
	$(BIN)/coverage report

## screenshots: regenerate docs/img/*.png from a live demo server in headless Chromium
screenshots: install browser
	$(BIN)/python -m tests.screenshots

## bench-install: the benchmark tools (psutil, matplotlib, py-spy; Node peer server and load generator)
bench-install: install $(VENV)/.bench-installed bench/peer/node_modules/.installed bench/loadgen/node_modules/.installed

$(VENV)/.bench-installed: requirements-bench.txt requirements-dev.txt requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $@

bench/%/node_modules/.installed: bench/%/package.json bench/%/package-lock.json
	cd bench/$* && npm ci --no-audit --no-fund --loglevel=error
	touch $@

## bench: quick benchmark profile against ours and the Node.js peer (a few minutes), then render docs/benchmarks.md
bench: bench-install
	$(BIN)/python -m bench.run --profile quick $(BENCH_ARGS)
	$(BIN)/python -m bench.render

## bench-full: every scenario at full size (10k connections, 1M rows; about half an hour), then render
bench-full: bench-install
	$(BIN)/python -m bench.run --profile full $(BENCH_ARGS)
	$(BIN)/python -m bench.render

## bench-smoke: the benchmark tools themselves work, with tiny numbers (under a minute)
bench-smoke: bench-install
	$(BIN)/python -m bench.smoke

## bench-render: docs/benchmarks.md and its plots from the results in bench/results/
bench-render: bench-install
	$(BIN)/python -m bench.render

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules bench/peer/node_modules bench/loadgen/node_modules .pytest_cache .ruff_cache
