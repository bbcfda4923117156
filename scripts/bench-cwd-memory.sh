#!/usr/bin/env bash
# Benchmark of `start --cwd` (figures, not pass/fail):
#   1. the tool's peak memory (maximum resident set size, GNU `/usr/bin/time -v`)
#      for a --cwd of a 500 MB tree (500 files of 1 MiB); the target is < 100 MB,
#      and a tool that read the tree into memory would show more than 500 MB;
#   2. the copy throughput of --cwd for a 200 MB tree of 20,000 files against
#      `tar c | docker exec -i CONTAINER tar x` of the same tree into a container
#      of the same image.
# The --cwd time is the tool's own: selecting the files (the `selected in`
# line of `-v`) plus streaming them into the created container (the
# `provisioning archive uploaded in` line), not the rest of the session.
#
# Needs a Docker daemon, the test images (scripts/build-test-images.sh) and
# GNU time (Debian package `time`). Sizes can be changed with BENCH_BIG_MB,
# BENCH_MANY_FILES and BENCH_MANY_KB; BENCH_BIN names a binary to measure
# instead of building target/release/claude-bottle.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

big_mb=${BENCH_BIG_MB:-500}
many_files=${BENCH_MANY_FILES:-20000}
many_kb=${BENCH_MANY_KB:-10}
agent_image=claude-bottle-test/agent:current
standin_image=claude-bottle-test/pipelock-standin:current
fence_image=claude-bottle-test/fence:current

if [ ! -x /usr/bin/time ]; then
    echo "bench-cwd: GNU time is required (apt-get install time)" >&2
    exit 1
fi
for image in "$agent_image" "$standin_image" "$fence_image"; do
    if ! docker image inspect "$image" >/dev/null 2>&1; then
        echo "bench-cwd: image \`$image\` is missing; run scripts/build-test-images.sh" >&2
        exit 1
    fi
done

if [ -n "${BENCH_BIN:-}" ]; then
    bin=$(realpath "$BENCH_BIN")
else
    cargo build --release --quiet
    bin=$PWD/target/release/claude-bottle
fi
scratch=$(mktemp -d)
container=""
cleanup() {
    [ -n "$container" ] && docker rm -f "$container" >/dev/null 2>&1
    rm -rf "$scratch"
}
trap cleanup EXIT

agent="bench-cwd-$$"
cat >"$scratch/manifest.json" <<JSON
{
  "bottles": {
    "bench": {
      "image": "$agent_image",
      "egress": { "allowlist": ["api.anthropic.com"] }
    }
  },
  "agents": { "$agent": { "bottle": "bench" } }
}
JSON
mkdir -p "$scratch/home" "$scratch/big" "$scratch/many"

echo "bench-cwd: writing a ${big_mb} MiB tree and a ${many_files}-file tree of ${many_kb} KiB files" >&2
for i in $(seq "$big_mb"); do
    head -c 1048576 /dev/urandom >"$scratch/big/file-$i.bin"
done
head -c $((many_kb * 1024)) /dev/urandom >"$scratch/seed"
for d in $(seq 0 99); do
    mkdir -p "$scratch/many/dir-$d"
done
for i in $(seq "$many_files"); do
    cp "$scratch/seed" "$scratch/many/dir-$((i % 100))/file-$i.txt"
done
rm "$scratch/seed"

# Runs `start --cwd` in $1; leaves GNU time's and the tool's stderr in $scratch/log.
session() {
    (cd "$1" && HOME="$scratch/home" CLAUDE_BOTTLE_PIPELOCK_IMAGE="$standin_image" \
        CLAUDE_BOTTLE_FENCE_IMAGE="$fence_image" NO_COLOR=1 \
        /usr/bin/time -v "$bin" -v --manifest "$scratch/manifest.json" \
        start "$agent" --yes --cwd -- --stub-sh 'du -sm ~/workspace' \
        </dev/null >"$scratch/out" 2>"$scratch/log")
}

# Milliseconds of a Debug-formatted duration (`1.234s`, `56.7ms`, `89µs`).
millis() {
    awk -v d="$1" 'BEGIN {
        if (d ~ /ms$/) { sub(/ms$/, "", d); print d + 0 }
        else if (d ~ /µs$/) { sub(/µs$/, "", d); print d / 1000 }
        else if (d ~ /ns$/) { sub(/ns$/, "", d); print d / 1000000 }
        else { sub(/s$/, "", d); print d * 1000 } }'
}

copy_ms() {
    local selected uploaded
    selected=$(sed -n 's/.*selected in \([0-9.]*[µnm]*s\).*/\1/p' "$scratch/log" | tail -1)
    uploaded=$(sed -n 's/.*provisioning archive uploaded in \([0-9.]*[µnm]*s\).*/\1/p' "$scratch/log" | tail -1)
    awk -v a="$(millis "$selected")" -v b="$(millis "$uploaded")" 'BEGIN { printf "%.0f", a + b }'
}

mb_per_s() { awk -v bytes="$1" -v ms="$2" 'BEGIN { printf "%.1f", bytes / 1e6 / (ms / 1000) }'; }

echo "bench-cwd: peak memory for the ${big_mb} MiB tree" >&2
session "$scratch/big"
peak_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$scratch/log")
grep -q 'CLAUDE_STUB_REPORT' "$scratch/out" || { cat "$scratch/log" >&2; exit 1; }
big_bytes=$(du -sb "$scratch/big" | cut -f1)
printf 'cwd %s MB tree: peak RSS %.1f MB (target < 100 MB); copied in %s ms\n' \
    "$((big_bytes / 1000000))" "$(awk -v k="$peak_kb" 'BEGIN { print k / 1024 }')" "$(copy_ms)"

echo "bench-cwd: throughput for ${many_files} files" >&2
session "$scratch/many"
grep -q 'CLAUDE_STUB_REPORT' "$scratch/out" || { cat "$scratch/log" >&2; exit 1; }
many_bytes=$(du -sb --apparent-size "$scratch/many" | cut -f1)
cwd_ms=$(copy_ms)

container=$(docker run -d --label claude-bottle.test=1 --entrypoint sleep "$agent_image" infinity)
docker exec "$container" mkdir -p /tmp/into
start=$(date +%s%N)
tar c -C "$scratch/many" . | docker exec -i "$container" tar x -C /tmp/into
end=$(date +%s%N)
tar_ms=$(( (end - start) / 1000000 ))

printf 'cwd %s files, %s MB: %s ms, %s MB/s\n' "$many_files" "$((many_bytes / 1000000))" \
    "$cwd_ms" "$(mb_per_s "$many_bytes" "$cwd_ms")"
printf 'tar c | docker exec -i tar x, same tree: %s ms, %s MB/s\n' \
    "$tar_ms" "$(mb_per_s "$many_bytes" "$tar_ms")"
printf "cwd throughput as a share of tar's: %s%%\n" "$(awk -v a="$tar_ms" -v b="$cwd_ms" 'BEGIN { printf "%.0f", 100 * a / b }')"
