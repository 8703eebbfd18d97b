#!/bin/sh
# Builds hello_as.wasm with the AssemblyScript compiler from node_modules (npm ci first).
# Usage: sh build.sh [OUTPUT.wasm]   (default: build/hello_as.wasm)
# `--use abort=abort_proc_exit`: the SDK's abort logs at critical then calls WASI proc_exit,
# as its README asks.
set -e
cd "$(dirname "$0")"
out="${1:-build/hello_as.wasm}"
mkdir -p "$(dirname "$out")"
node node_modules/assemblyscript/bin/asc assembly/index.ts -b "$out" --use abort=abort_proc_exit --optimize
