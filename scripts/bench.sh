#!/usr/bin/env bash
# Prints timing figures for the host-side commands (no daemon needed) and, when
# a Docker daemon and the test images are available, for a whole session with
# the stub claude and the pipelock stand-in. Figures, not pass/fail.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --quiet
bin=target/release/claude-bottle
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

cat >"$scratch/manifest.json" <<'JSON'
{
  "bottles": {
    "bench": {
      "image": "claude-bottle-test/agent:current",
      "egress": { "allowlist": ["api.anthropic.com", "*.githubusercontent.com"] }
    }
  },
  "agents": { "bench": { "bottle": "bench" } }
}
JSON

if command -v hyperfine >/dev/null 2>&1; then
    hyperfine --warmup 5 --runs 50 -N \
        "$bin --help" \
        "$bin --manifest $scratch/manifest.json proxy-config bench" \
        "$bin proxy-config claude"
else
    echo "bench: hyperfine not found (apt-get install hyperfine); using a shell loop" >&2
    for cmd in "$bin --help" "$bin --manifest $scratch/manifest.json proxy-config bench"; do
        start=$(date +%s%N)
        for _ in $(seq 50); do $cmd >/dev/null; done
        end=$(date +%s%N)
        printf '%s: %d us per run (mean of 50)\n' "$cmd" $(( (end - start) / 50000 ))
    done
fi

if docker image inspect claude-bottle-test/agent:current >/dev/null 2>&1 \
    && docker image inspect claude-bottle-test/pipelock-standin:current >/dev/null 2>&1 \
    && docker image inspect claude-bottle-test/fence:current >/dev/null 2>&1; then
    export CLAUDE_BOTTLE_PIPELOCK_IMAGE=claude-bottle-test/pipelock-standin:current
    export CLAUDE_BOTTLE_FENCE_IMAGE=claude-bottle-test/fence:current
    session="$bin --manifest $scratch/manifest.json start bench --yes -- --stub-exit 0"
    if command -v hyperfine >/dev/null 2>&1; then
        hyperfine --warmup 1 --runs 10 -N "$session"
    else
        start=$(date +%s%N)
        for _ in $(seq 5); do $session </dev/null >/dev/null 2>&1; done
        end=$(date +%s%N)
        printf 'full session: %d ms per run (mean of 5)\n' $(( (end - start) / 5000000 ))
    fi
else
    echo "bench: test images absent (scripts/build-test-images.sh); skipping the session figure" >&2
fi
