# Entry points: build, test, run, bench, lint. Every target installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := build

WASM_TARGET := wasm32-wasip1
WASM_OUT    := target/$(WASM_TARGET)/wasm-release/jwt_filter.wasm
DIST_WASM   := dist/jwt_filter.wasm

.PHONY: build test unit lint run bench wasm-target clean

wasm-target:
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)

build: wasm-target
	cargo build -p jwt_filter --target $(WASM_TARGET) --profile wasm-release
	@mkdir -p dist
	cp $(WASM_OUT) $(DIST_WASM)
	@echo "wrote $(DIST_WASM) ($$(stat -c %s $(DIST_WASM)) bytes)"

# Native unit tests of the core (and of every other crate), then the wasm build.
unit:
	cargo test --workspace --release

test: unit build

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

run: build
	@echo "make run: the demo lands with the Envoy adapter" && exit 1

bench:
	@echo "make bench: the benchmarks land with the performance work" && exit 1

clean:
	cargo clean
	rm -rf dist
