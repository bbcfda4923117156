#!/usr/bin/env bash
# Runs the whole test suite: builds (or reuses) the offline test images, then
# runs every test with cargo-nextest. Real-daemon tests fail when `CI` is set
# and Docker is unreachable; elsewhere they skip with a loud message.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v cargo-nextest >/dev/null 2>&1; then
    echo "test: cargo-nextest is required" >&2
    echo "  hint: cargo install cargo-nextest --locked" >&2
    exit 1
fi

if docker info >/dev/null 2>&1; then
    # The image refs go to stdout as NAME=REF lines; tests find the images by
    # their `:current` tags, so the lines are only shown.
    bash scripts/build-test-images.sh >&2
elif [ -n "${CI:-}" ]; then
    echo "test: the Docker daemon is unreachable and CI is set; real-daemon tests cannot run" >&2
    exit 1
else
    echo "test: WARNING: no Docker daemon; real-daemon tests will be skipped" >&2
fi

profile=default
[ -n "${CI:-}" ] && profile=ci
cargo nextest run --workspace --profile "$profile" "$@"
cargo test --workspace --doc --quiet
