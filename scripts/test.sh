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
#
# Then the Podman part: the real-daemon tests that cover every guarantee
# (the e2e isolation suite: egress matrix, no way to the host, DNS, secrets;
# and the session tests of teardown and cleanup) run again against Podman's
# Docker-compatible service at `CLAUDE_BOTTLE_TEST_PODMAN_HOST` (default
# unix:///run/podman/podman.sock), with the test images copied into it.
# When Podman does not answer there: with `CI` set the run fails; elsewhere
# the part is reported as skipped, loudly. `.ci/run` installs and starts it.
# Then the same against rootless Podman (below).
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

# `CLAUDE_BOTTLE_TEST_ONLY=rootless-podman` runs the rootless Podman part
# alone (scripts/rootless-podman.sh test).
only=${CLAUDE_BOTTLE_TEST_ONLY:-}
status=0
if [ -z "$only" ]; then
    warn_skipped
    cargo nextest run --workspace --profile "$profile" "$@" || status=$?
    warn_skipped
    [ "$status" -eq 0 ] || exit "$status"
    cargo test --workspace --doc --quiet
fi

# --- the Podman part ---------------------------------------------------------

# Why the Podman service at $1 (named $2 in messages) cannot run the tests,
# with $3 appended when none answers; nothing when it can (its test images
# are then copied in).
podman_problem() {
    if ! DOCKER_HOST=$1 docker version --format '{{range .Server.Components}}{{.Name}};{{end}}' 2>/dev/null | grep -q 'Podman Engine'; then
        echo "no Podman service answers at \`$1\`$3"
    elif ! bash scripts/copy-test-images.sh "$1" >&2; then
        echo "the test images could not be copied into $2 (scripts/copy-test-images.sh; its error is above)"
    fi
}

# The part $1 cannot run, for the reason $2: with CI set the run fails;
# elsewhere its tests (the filter $3) are reported as skipped.
podman_part_skipped() {
    if [ -n "${CI:-}" ]; then
        echo "test: error: $2; CI is set, so $1 must run: failing" >&2
        exit 1
    fi
    count=$(cargo nextest list --workspace --message-format oneline -E "$3" | grep -c . || true)
    printf '\ntest: !!! WARNING: %s (%s tests) SKIPPED: %s\n' "$1" "$count" "$2" >&2
    printf 'test: !!! it did not run; with CI set this is an error\n\n' >&2
}

podman_host=${CLAUDE_BOTTLE_TEST_PODMAN_HOST:-unix:///run/podman/podman.sock}
# On Podman, the e2e isolation suite whole, and the session tests of
# teardown and cleanup.
podman_filter='binary(e2e_isolation) or (binary(docker_session) and (test(a_full_session) or test(/leaves_nothing$/) or test(cleanup_removes)))'
podman_unavailable=""
if [ -n "$only" ]; then
    :
elif [ -n "$unavailable" ]; then
    podman_unavailable="the test images could not be built on Docker ($unavailable)"
else
    podman_unavailable=$(podman_problem "$podman_host" Podman " (start one: podman system service --time=0 $podman_host)")
fi
if [ -n "$only" ]; then
    : # not this part
elif [ -n "$podman_unavailable" ]; then
    podman_part_skipped "the Podman part" "$podman_unavailable" "$podman_filter"
else
    echo "test: the Podman part, against $podman_host" >&2
    DOCKER_HOST=$podman_host cargo nextest run --workspace --profile "$profile" -E "$podman_filter" "$@" || status=$?
fi

# --- the rootless Podman part --------------------------------------------------
# The same tests against rootless Podman's service at
# `CLAUDE_BOTTLE_TEST_ROOTLESS_PODMAN_HOST` (unix://$XDG_RUNTIME_DIR/podman/podman.sock
# of its user), which `scripts/rootless-podman.sh up` sets up as root, with a
# user of its own, and `down` takes away again (`scripts/rootless-podman.sh
# test` does all three). Unset, the part is reported as skipped, also under
# `CI`: `.ci/run` does not set it up, since on this project's two-core machine
# rootless Podman 4.3's name resolution on the egress network (aardvark-dns
# behind slirp4netns) timed out in two runs of five, where the same tests
# passed in the other three.
rootless_host=${CLAUDE_BOTTLE_TEST_ROOTLESS_PODMAN_HOST:-}
rootless_filter=$podman_filter
rootless_unavailable=""
if [ -z "$rootless_host" ]; then
    count=$(cargo nextest list --workspace --message-format oneline -E "$rootless_filter" | grep -c . || true)
    printf '\ntest: the rootless Podman part (%s tests) SKIPPED: `CLAUDE_BOTTLE_TEST_ROOTLESS_PODMAN_HOST` is not set; as root, scripts/rootless-podman.sh test runs it\n\n' "$count" >&2
    exit "$status"
fi
rootless_unavailable=$(podman_problem "$rootless_host" "rootless Podman" "")
if [ -n "$rootless_unavailable" ]; then
    podman_part_skipped "the rootless Podman part" "$rootless_unavailable" "$rootless_filter"
    exit "$status"
fi
# Rootless Podman on cgroup v1 cannot limit a container's processes, so the
# check that holds the agent to its pids limit cannot pass there: left out,
# loudly (`claude-bottle doctor` names the gap to users).
if [ "$(DOCKER_HOST=$rootless_host docker info --format '{{.CgroupVersion}}' 2>/dev/null)" = 1 ]; then
    rootless_filter="($rootless_filter) and not test(the_agent_cannot_become_root_or_reach_docker_and_normal_work_functions)"
    printf '\ntest: !!! WARNING: rootless Podman runs on cgroup v1 here, which cannot limit processes: the_agent_cannot_become_root_or_reach_docker_and_normal_work_functions SKIPPED there\n\n' >&2
fi
echo "test: the rootless Podman part, against $rootless_host" >&2
# One test at a time, and one retry that nextest reports as FLAKY, never as a
# plain pass: with several sessions at once on a loaded two-core host,
# rootless Podman 4.3's name resolution (aardvark-dns behind slirp4netns)
# timed out, and its network listing failed with "network inspection
# mismatch ... internal libpod error" while another test's container joined
# a network, in a run where the same tests had passed before.
DOCKER_HOST=$rootless_host cargo nextest run --workspace --profile "$profile" --test-threads 1 --retries 1 \
    -E "$rootless_filter" "$@" || status=$?
exit "$status"
