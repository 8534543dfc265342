# Konvrt: `make run` serves the API and the workers; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# `make run` serves the web tier as the Procfile does (gunicorn, DEBUG off); `make dev` runs Django's
# development server (DEBUG on) with the same workers.
.PHONY: run dev test lint format install clean bench mutation web-vendor cluster-test

$(STAMP): requirements.txt requirements/base.txt requirements/production.txt requirements/development.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/development.txt
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python scripts/run_local.py

dev: $(STAMP)
	$(BIN)/python scripts/run_local.py --dev

# The bench smoke run (marker `bench`) is left out; CI adds it: PYTEST_ARGS="-m 'bench or not bench'".
# The bench harness's smoke run (marker `bench`, over a minute) is left out, except under CI
# (CI=true), which runs everything.
TEST_MARKERS := $(if $(CI),-m "bench or not bench",)

test: $(STAMP)
	$(BIN)/python scripts/embedded_redis.py --private -- $(BIN)/python -m pytest $(TEST_MARKERS) $(PYTEST_ARGS)

# Several hosts on one machine (not part of `make test`; docs/deployment.md): network namespaces for
# a services host (its own PostgreSQL, Redis and S3 server), a web host and two worker hosts, each
# running the Procfile's commands; jobs spread, a worker host killed and one cut off, the web host
# restarted. Needs root and `ip netns`; prints "SKIPPED: <reason>" and succeeds without them.
cluster-test: $(STAMP)
	$(BIN)/python scripts/cluster.py

# Benchmarks (not part of `make test`): needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL; the
# Redis database is flushed) and, for the FFmpeg build comparison and the load generator, Debian's
# ffmpeg and wrk (`apt-get install ffmpeg wrk`; each part is skipped or replaced without them).
# Quick run: make bench BENCH_ARGS="--quick --cases image,audio"
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) bench/requirements.txt
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# Mutation testing (not part of `make test`; docs/mutation.md): each core module is mutated by mutmut
# and tested by its own tests only; prints killed/total per module and fails under 90 %. Needs what
# the tests need (DATABASE_URL: PostgreSQL; REDIS_URL: a Redis database of its own, it is flushed).
# One module: make mutation MUTATION_ARGS=recovery
MUTATION_STAMP := $(VENV)/.mutation-installed
$(MUTATION_STAMP): $(STAMP) requirements/mutation.txt
	$(BIN)/python -m pip install --quiet -r requirements/mutation.txt
	touch $(MUTATION_STAMP)

mutation: $(MUTATION_STAMP)
	$(BIN)/python scripts/embedded_redis.py --private -- $(BIN)/python scripts/mutation.py $(MUTATION_ARGS)

# The web page's vendored tus-js-client (docs/web.md): fetched with `npm pack`, checked against its
# pinned sha256 and copied, licence included, into apps/web/static/web/vendor/ (committed).
web-vendor:
	sh scripts/vendor_web.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) storage staticfiles .pytest_cache
