#!/usr/bin/env bash
# The benchmark (README "Performance"): runs whole sessions with the stub
# `claude` and the pipelock stand-in on the daemon at hand, and prints a
# table of medians. Figures, never pass/fail.
#
#   scripts/bench.sh [RUNS]        RUNS per figure (default 10, at least 10
#                                  for the README's table)
#   BENCH_BOTTLES="10 25 50"       the N of "N bottles at once"
#   BENCH_CWD_MB=200 BENCH_CWD_FILES=20000   the --cwd tree
#
# Needs: a Docker daemon, the test images (scripts/build-test-images.sh),
# python3 (the floor and the report parser). Everything it makes carries
# the label claude-bottle.bench (or is a claude-bottle bottle of an agent
# named bench-*), and is removed on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=${1:-10}
bottles=${BENCH_BOTTLES:-10 25 50}
cwd_mb=${BENCH_CWD_MB:-200}
cwd_files=${BENCH_CWD_FILES:-20000}
agent_image=claude-bottle-test/agent:current
proxy_image=claude-bottle-test/pipelock-standin:current
fence_image=claude-bottle-test/fence:current

for image in "$agent_image" "$proxy_image" "$fence_image"; do
    if ! docker image inspect "$image" >/dev/null 2>&1; then
        echo "bench: image \`$image\` absent; build the test images first (scripts/build-test-images.sh)" >&2
        exit 2
    fi
done
command -v python3 >/dev/null || { echo "bench: python3 is needed" >&2; exit 2; }

cargo build --release --quiet
bin=$PWD/target/release/claude-bottle
scratch=$(mktemp -d)
tar_container=claude-bottle-bench-tar-$$
cleanup() {
    docker rm -f "$tar_container" >/dev/null 2>&1 || true
    # Sessions still running (an interrupted bench) are torn down by their
    # own tool; what a killed one left, `cleanup` finds.
    rm -rf "$scratch"
}
trap cleanup EXIT
export CLAUDE_BOTTLE_PIPELOCK_IMAGE=$proxy_image
export CLAUDE_BOTTLE_FENCE_IMAGE=$fence_image
export HOME=$scratch/home
mkdir -p "$HOME"

# One bottle, and agents bench-1..bench-50 in it for the concurrency figure.
python3 - "$scratch/manifest.json" "$agent_image" <<'PY'
import json, sys
agents = {"bench": {"bottle": "bench"}}
agents.update({f"bench-{i}": {"bottle": "bench"} for i in range(1, 201)})
json.dump({"bottles": {"bench": {"image": sys.argv[2],
           "env": {"CLAUDE_STUB_PROBE_TIMEOUT": "900"},
           "egress": {"allowlist": ["api.anthropic.com"]}}},
           "agents": agents}, open(sys.argv[1], "w"))
PY
cb() { "$bin" --manifest "$scratch/manifest.json" "$@"; }
now() { date +%s.%N; }
median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
ms() { awk -v s="$1" 'BEGIN {printf "%.0f ms", s*1000}'; }
# The stub's report: the stdout of probe N.
probe_out() { python3 -c '
import json, sys
for line in sys.stdin:
    if line.startswith("CLAUDE_STUB_REPORT "):
        print(json.loads(line.split(" ", 1)[1])["probes"][int(sys.argv[1])]["stdout"].strip())
' "$1"; }

# A session whose stub stamps the time it starts and the time it ends:
# prints "<time-to-Claude> <Claude's exit to the tool's exit>" in seconds.
timed_session() {
    local t0 t1 out
    t0=$(now)
    out=$(cb start bench --yes "$@" -- --stub-sh 'date +%s.%N' --stub-sh 'date +%s.%N' </dev/null 2>/dev/null)
    t1=$(now)
    local first last
    first=$(probe_out 0 <<<"$out")
    last=$(probe_out 1 <<<"$out")
    awk -v t0="$t0" -v t1="$t1" -v a="$first" -v b="$last" 'BEGIN {printf "%.4f %.4f\n", a-t0, t1-b}'
}

echo "bench: $runs runs per figure; machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Docker $(docker version --format '{{.Server.Version}}'), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
cb proxy-config bench >"$scratch/pipelock.yaml"

# --- start+stop against the floor, alternating so both see the same load.
: >"$scratch/startstop"; : >"$scratch/floor"
cb start bench --yes -- --stub-exit 0 </dev/null >/dev/null 2>&1   # warm the caches
for i in $(seq "$runs"); do
    t0=$(now)
    cb start bench --yes -- --stub-exit 0 </dev/null >/dev/null 2>&1
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN {print b-a}' >>"$scratch/startstop"
    python3 scripts/bench_floor.py 1 "$agent_image" "$proxy_image" "$fence_image" "10.214.$((i % 250))" "$scratch/pipelock.yaml" >>"$scratch/floor"
done
startstop=$(median <"$scratch/startstop")
floor=$(median <"$scratch/floor")

# --- cold time-to-Claude and Claude's exit to the tool's exit.
: >"$scratch/cold"; : >"$scratch/exit"
for i in $(seq "$runs"); do
    read -r to_claude to_exit < <(timed_session)
    echo "$to_claude" >>"$scratch/cold"
    echo "$to_exit" >>"$scratch/exit"
done
cold=$(median <"$scratch/cold")
exit_latency=$(median <"$scratch/exit")

# --- warm time-to-Claude, once `prewarm` exists.
warm=n/a
if cb prewarm --help >/dev/null 2>&1; then
    : >"$scratch/warm"
    for i in $(seq "$runs"); do
        cb prewarm bench --count 1 </dev/null >/dev/null 2>&1
        read -r to_claude _ < <(timed_session)
        echo "$to_claude" >>"$scratch/warm"
    done
    warm=$(median <"$scratch/warm")
fi

# --- --cwd against tar: the same tree, into a running container.
tree=$scratch/tree
python3 - "$tree" "$cwd_mb" "$cwd_files" <<'PY'
import os, sys
root, mb, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
size = mb * 1_000_000 // files
chunk = os.urandom(size)
for i in range(files):
    d = os.path.join(root, f"d{i // 500:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}.bin"), "wb") as f:
        f.write(chunk[i % 97:] + chunk[:i % 97])
PY
: >"$scratch/cwd"; : >"$scratch/tar"
docker run -d --name "$tar_container" --label claude-bottle.bench=tar --entrypoint sleep "$agent_image" infinity >/dev/null
# A failed run is reported and left out of the median (a loaded daemon can
# refuse an exec), instead of ending the whole benchmark.
for i in $(seq "$runs"); do
    t0=$(now)
    if ! (cd "$tree" && cb start bench --yes --cwd -- --stub-exit 0 </dev/null >/dev/null 2>"$scratch/cwd.err"); then
        echo "bench: --cwd run $i failed: $(grep -m1 '^error' "$scratch/cwd.err")" >&2
    else
        t1=$(now)
        awk -v a="$t0" -v b="$t1" -v base="$startstop" -v mb="$cwd_mb" 'BEGIN {d=b-a-base; if (d<=0) d=0.001; print mb/d}' >>"$scratch/cwd"
    fi
    docker exec "$tar_container" sh -c 'rm -rf /tmp/tree && mkdir -p /tmp/tree' || true
    t0=$(now)
    if ! (tar c -C "$tree" . | docker exec -i "$tar_container" tar x -C /tmp/tree); then
        echo "bench: tar run $i failed" >&2
        continue
    fi
    t1=$(now)
    awk -v a="$t0" -v b="$t1" -v mb="$cwd_mb" 'BEGIN {print mb/(b-a)}' >>"$scratch/tar"
done
docker rm -f "$tar_container" >/dev/null
cwd_rate=$(median <"$scratch/cwd")
tar_rate=$(median <"$scratch/tar")

# --- N bottles at once: all started together, each stub holding at a gate.
scale_rows=()
for n in $bottles; do
    pids=()
    t0=$(now)
    for i in $(seq "$n"); do
        cb start "bench-$i" --yes -- --stub-sh 'while [ ! -e /tmp/bench-go ]; do sleep 0.1; done' \
            </dev/null >"$scratch/scale-$i.out" 2>"$scratch/scale-$i.err" &
        pids+=($!)
    done
    running=0 failed=""
    while :; do
        running=$(docker ps --filter label=claude-bottle.role=agent --filter status=running \
            --format '{{.Label "claude-bottle.agent"}}' | grep -c '^bench-[0-9]*$' || true)
        [ "$running" -ge "$n" ] && break
        for i in $(seq "$n"); do
            if ! kill -0 "${pids[$((i - 1))]}" 2>/dev/null; then
                failed=$(grep -m1 '^error' "$scratch/scale-$i.err" || echo "exited")
                break 2
            fi
        done
        sleep 0.2
    done
    t1=$(now)
    if [ -n "$failed" ]; then
        scale_rows+=("$n|failed: $failed|")
    else
        # Memory: the bottle's two containers, its agent and its proxy, plus the
        # host's tool and docker CLI. Chosen by role and agent label, not by
        # name: `claude-bottle-fence-bench-N` ends like the bottle's names, but
        # the fence is a one-shot container `start` removes before it returns,
        # no part of a running bottle; one still there is left out.
        containers=$(for role in agent proxy; do
            docker ps --filter label=claude-bottle.managed=true --filter "label=claude-bottle.role=$role" \
                --format '{{.Names}} {{.Label "claude-bottle.agent"}}'
        done | awk '$2 ~ /^bench-[0-9]+$/ {print $1}')
        # One container at a time: `docker stats` of many at once answered
        # `EOF` on Docker 20.10 here, and the script stopped.
        # The sum and how many figures were read: a row from fewer than the
        # 2n containers would understate the memory per bottle.
        read -r mem_containers mem_read < <(for c in $containers; do
            docker stats --no-stream --format '{{.MemUsage}}' "$c" || echo "bench: no memory figure for $c" >&2
        done | awk '
            {v=$1; u=v; gsub(/[0-9.]/, "", u); gsub(/[^0-9.]/, "", v)
             m = (u=="GiB") ? v*1024 : (u=="MiB") ? v : (u=="KiB") ? v/1024 : v/1048576; s+=m; k++}
            END {print s+0, k+0}')
        mem_host=$(ps -o rss= -p "$(pgrep -d, -f "$bin --manifest $scratch/manifest.json start bench-" || echo 1)" | awk '{s+=$1} END {print s/1024}')
        mem_cli=$(pgrep -d, -f 'docker .*exec .*claude' >/dev/null && ps -o rss= -p "$(pgrep -d, -f 'docker .*exec .*claude')" | awk '{s+=$1} END {print s/1024}' || echo 0)
        if [ "$mem_read" -lt $((2 * n)) ]; then
            per="failed: the memory of $mem_read of $((2 * n)) containers was read"
        else
            per=$(awk -v c="$mem_containers" -v h="$mem_host" -v d="$mem_cli" -v n="$n" 'BEGIN {printf "%.0f MiB (containers %.0f, tool %.0f, docker CLI %.0f)", (c+h+d)/n, c/n, h/n, d/n}')
        fi
        scale_rows+=("$n|$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f s", b-a}')|$per")
    fi
    for i in $(seq "$n"); do
        docker exec "claude-bottle-bench-$i" touch /tmp/bench-go >/dev/null 2>&1 &
    done
    for pid in "${pids[@]}"; do wait "$pid" || true; done
done

printf '\n| figure | median of %s |\n|---|---|\n' "$runs"
printf '| start+stop | %s |\n' "$(ms "$startstop")"
printf '| floor (fewest Engine API calls, same resources) | %s |\n' "$(ms "$floor")"
printf '| start+stop / floor | %s |\n' "$(ratio "$startstop" "$floor")"
printf '| cold time-to-Claude | %s |\n' "$(ms "$cold")"
if [ "$warm" = n/a ]; then
    printf '| warm time-to-Claude | n/a (no prewarm) |\n| warm / cold | n/a (no prewarm) |\n'
else
    printf '| warm time-to-Claude | %s |\n' "$(ms "$warm")"
    printf '| warm / cold | %s |\n' "$(ratio "$warm" "$cold")"
fi
printf "| Claude's exit to the tool's exit | %s |\n" "$(ms "$exit_latency")"
printf '| --cwd (%s MB, %s files) | %.0f MB/s |\n' "$cwd_mb" "$cwd_files" "$cwd_rate"
printf '| tar c \\| docker exec tar x, same tree | %.0f MB/s |\n' "$tar_rate"
printf '| --cwd / tar | %s |\n' "$(ratio "$cwd_rate" "$tar_rate")"
printf '\n| bottles at once | until all run | memory per bottle |\n|---|---|---|\n'
for row in "${scale_rows[@]}"; do
    IFS='|' read -r n t m <<<"$row"
    printf '| %s | %s | %s |\n' "$n" "$t" "$m"
done
