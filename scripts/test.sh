#!/usr/bin/env bash
# Runs the whole test suite: builds (or reuses) the offline test images, then
# runs every test with cargo-nextest, then the doc tests.
#
# Needs a Rust toolchain and cargo-nextest; the real-daemon tests (the
# binaries tests/docker_*.rs and tests/e2e_*.rs) also need the docker CLI, a
# Docker daemon and the test images, which scripts/build-test-images.sh builds
# offline (it needs mmdebstrap). `.ci/run` installs all of it on Debian.
#
# Whether the real-daemon tests can run is decided once, here. When they
# cannot (no daemon, or the images cannot be built): with `CI` set the run
# fails at once; elsewhere they are left out of the run (nextest profile
# `no-daemon`, .config/nextest.toml), so nextest's summary counts them as
# skipped, and a loud line says how many and why. They never pass without
# having run: run on their own without a daemon, they fail and say why. The
# same holds for the gVisor tests when `runsc` is missing (profile
# `no-runsc`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v cargo-nextest >/dev/null 2>&1; then
    echo "test: cargo-nextest is required" >&2
    echo "  hint: cargo install cargo-nextest --locked (or run .ci/run, which installs what the tests need)" >&2
    exit 1
fi

# Why the real-daemon tests cannot run here; empty when they can.
unavailable=""
if ! command -v docker >/dev/null 2>&1; then
    unavailable="the \`docker\` CLI is not installed"
elif ! docker info >/dev/null 2>&1; then
    unavailable="the Docker daemon at \`${DOCKER_HOST:-unix:///var/run/docker.sock}\` does not answer"
# The image refs go to stdout as NAME=REF lines; tests find the images by
# their `:current` tags, so the lines are only shown.
elif ! bash scripts/build-test-images.sh >&2; then
    unavailable="the test images could not be built (scripts/build-test-images.sh; its error is above)"
fi

# Why gVisor's tests (tests/e2e_runsc.rs, `gvisor_*`) cannot run here; empty
# when they can: they need `runsc` installed, or registered with the daemon.
no_runsc=""
if [ -z "$unavailable" ] && ! command -v runsc >/dev/null 2>&1 &&
    ! docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'; then
    no_runsc="gVisor's \`runsc\` is not installed (apt-get install runsc; .ci/run installs it)"
fi

profile=default
[ -n "${CI:-}" ] && profile=ci
skipped=0
why=""
what=""
if [ -n "$unavailable" ] || [ -n "$no_runsc" ]; then
    if [ -n "${CI:-}" ]; then
        echo "test: error: $unavailable$no_runsc; CI is set, so the real-daemon and gVisor tests must run: failing" >&2
        exit 1
    fi
    if [ -n "$unavailable" ]; then
        profile=no-daemon
        why="$unavailable"
        what="real-daemon tests (tests/docker_*.rs, tests/e2e_*.rs)"
    else
        profile=no-runsc
        why="$no_runsc"
        what="gVisor tests (tests/e2e_runsc.rs, gvisor_*)"
    fi
    # The tests the profile leaves out: all of them, less those it runs.
    count() { cargo nextest list --workspace --profile "$profile" --message-format oneline "$@" | grep -c . || true; }
    all=$(count --ignore-default-filter)
    kept=$(count)
    skipped=$((all - kept))
fi

warn_skipped() {
    if [ "$skipped" -gt 0 ]; then
        printf '\ntest: !!! WARNING: %d %s SKIPPED: %s\n' "$skipped" "$what" "$why" >&2
        printf 'test: !!! they did not run; with CI set this is an error\n\n' >&2
    fi
}

warn_skipped
status=0
cargo nextest run --workspace --profile "$profile" "$@" || status=$?
warn_skipped
[ "$status" -eq 0 ] || exit "$status"
cargo test --workspace --doc --quiet
