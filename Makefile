# memlake: `make run` starts the all-in-one suite, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUF := .tools/node_modules/.bin/buf
BUF_VERSION := 1.75.0

.PHONY: install run test lint proto proto-check buf bench-locomo bench-context bench-smallscope bench-scale bench-facts bench-fuzz bench-load bench-faults clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

$(BUF):
	mkdir -p .tools
	cd .tools && npm install --silent --no-audit --no-fund --prefix . @bufbuild/buf@$(BUF_VERSION)

buf: $(BUF)

## Start all three services in one process on the embedded default (Ctrl-C stops).
run: install
	$(VENV)/bin/memlake serve

## The whole suite: SQLite always; Postgres/Redis where they answer (skipped with a reason otherwise).
test: install buf
	$(PY) -m pytest -q -rs

lint: install buf
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(BUF) lint

## Regenerate the Python stubs from proto/ into memlake/v1 (never edit them by hand).
proto: install
	$(PY) -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. --grpc_python_out=. proto/memlake/v1/*.proto
	touch memlake/v1/__init__.py

DATA ?= ../shared/data/locomo10-dev.json
AUDIT ?=
OUT ?= bench/out/locomo.json
ADDR ?=
bench-locomo: install
	$(PY) bench/locomo.py --data $(DATA) $(if $(AUDIT),--audit $(AUDIT)) --out $(OUT) $(if $(ADDR),--addr $(ADDR)) $(if $(ABLATE),--ablate)

## GetContext on LoCoMo at 250/500/1000/2000 tokens: context recall per budget and category.
bench-context: install
	$(PY) bench/context.py --data $(DATA) $(if $(AUDIT),--audit $(AUDIT)) --out bench/out/context.json

## Precision@1 and MRR over four small mixed-type personas (bench/data/smallscope.json).
bench-smallscope: install
	$(PY) bench/smallscope.py --out bench/out/smallscope.json

bench-scale: install
	$(PY) bench/scale.py --out bench/out/scale.json

bench-facts: install
	$(PY) bench/facts.py --out bench/out/facts.json

## Fuzz every RPC: N generated requests and GARBAGE raw bodies each (0 UNKNOWN/INTERNAL/hangs).
N ?= 10000
GARBAGE ?= 1000
DATABASE_URL ?=
REDIS_URL ?=
bench-fuzz: install
	$(PY) bench/fuzz.py --n $(N) --garbage $(GARBAGE) --out bench/out/fuzz$(if $(DATABASE_URL),-postgres).json \
		$(if $(DATABASE_URL),--database-url $(DATABASE_URL)) $(if $(REDIS_URL),--redis-url $(REDIS_URL))

## N clients mixing Remember/Search/GetContext/AssertFact for SECONDS (MODE allinone|services|both).
CLIENTS ?= 16
SECONDS ?= 20
MODE ?= allinone
bench-load: install
	$(PY) bench/load.py --clients $(CLIENTS) --seconds $(SECONDS) --mode $(MODE) --out bench/out/load-$(MODE).json \
		$(if $(DATABASE_URL),--database-url $(DATABASE_URL)) $(if $(REDIS_URL),--redis-url $(REDIS_URL))

## kill -9 of each service during writes, ROUNDS rounds (Postgres; starts its own Redis).
ROUNDS ?= 20
bench-faults: install
	$(PY) bench/faults.py --rounds $(ROUNDS) --out bench/out/faults.json $(if $(DATABASE_URL),--database-url $(DATABASE_URL))

clean:
	rm -rf $(VENV) .tools .pytest_cache .ruff_cache *.egg-info
