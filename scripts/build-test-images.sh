#!/usr/bin/env bash
# Builds the offline test images of claude-bottle (SPEC §9) without any image
# registry: a Debian rootfs made by mmdebstrap and loaded with `docker import`,
# and images built FROM it with the classic builder.
#
#   claude-bottle-test/base              Debian bookworm rootfs (test-support/images/base/packages.txt)
#   claude-bottle-test/agent             user node (1000:1000) and the stub `claude`
#   claude-bottle-test/http              HTTP server on :80 that names the Host it was asked for
#   claude-bottle-test/sshd              sshd on :22 serving /srv/git/repo.git for user git
#   claude-bottle-test/dns               dnsmasq on :53 logging every query
#   claude-bottle-test/fence             sh and iptables: the fence image of the tests (CLAUDE_BOTTLE_FENCE_IMAGE)
#   claude-bottle-test/pipelock-standin  the pipelock test double (built with cargo)
#
# Every tag is content-addressed (a hash of the image's inputs), so a rerun with
# unchanged inputs builds nothing. Each image is also tagged `:current`, which
# is what tests use. Every image carries the label claude-bottle.test=1.
# test-support/images/README.md tells how tests use each image.
#
# stdout: one NAME=REF line per image (shell-sourceable); logs go to stderr.
#
# Environment:
#   CLAUDE_BOTTLE_TEST_CACHE     cache dir for the rootfs tarball
#                                (default ${XDG_CACHE_HOME:-~/.cache}/claude-bottle-test)
#   CLAUDE_BOTTLE_TEST_MIRROR    Debian mirror (default http://deb.debian.org/debian)
#   CLAUDE_BOTTLE_TEST_REQUIRE_STANDIN=1
#                                fail instead of warn when the pipelock stand-in crate is absent
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
images_dir="$repo_root/test-support/images"
standin_crate="$repo_root/test-support/pipelock-standin"
cache_dir=${CLAUDE_BOTTLE_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/claude-bottle-test}
mirror=${CLAUDE_BOTTLE_TEST_MIRROR:-http://deb.debian.org/debian}
label=claude-bottle.test=1

log() { printf 'build-test-images: %s\n' "$*" >&2; }
die() {
    printf 'build-test-images: error: %s\n' "$1" >&2
    shift
    for hint in "$@"; do printf '  hint: %s\n' "$hint" >&2; done
    exit 1
}

# A tag of 16 hex digits of a sha256 over everything piped in.
digest() { sha256sum | cut -c1-16; }

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# Tags REF as REPO:current, untags the REPO's older content tags (best effort:
# an image a container still uses stays), and prints the VAR=REF line.
publish() {
    local var=$1 ref=$2 repo=${2%:*} old
    docker tag "$ref" "$repo:current"
    for old in $(docker images --format '{{.Repository}}:{{.Tag}}' "$repo"); do
        if [[ $old != "$ref" && $old != "$repo:current" ]]; then
            docker rmi "$old" >/dev/null 2>&1 || true
        fi
    done
    printf '%s=%s\n' "$var" "$ref"
}

# A build context as a deterministic tar stream: sorted names, fixed owner and
# mtime, modes normalized (executables 0755, the rest 0644, whatever the umask
# of the checkout), so its hash changes only when a name, the executable bit
# or a content does. COPY keeps these modes.
context_tar() {
    tar -C "$1" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
        --mode=u+rwX,go+rX,go-w --format=gnu -cf - .
}

command -v docker >/dev/null || die "\`docker\` not found" "install the docker CLI and start a daemon"
docker info >/dev/null 2>&1 || die "the Docker daemon at \`${DOCKER_HOST:-unix:///var/run/docker.sock}\` does not answer" \
    "start it, or point DOCKER_HOST at a running daemon"

mkdir -p "$cache_dir"
# Two runs at once (parallel test binaries, a developer and CI) would race on
# the tarball and on tags; one at a time.
exec 9>"$cache_dir/.lock"
flock 9

# --- base: mmdebstrap rootfs + docker import --------------------------------

suite=bookworm
packages=$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$images_dir/base/packages.txt" | sort -u | paste -sd, -)
# Everything that shapes the rootfs; changing any of it changes base's tag.
mmdebstrap_args=(
    --variant=apt
    --aptopt='APT::Install-Recommends "false"'
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/info/*'
    # Host keys made at install time would be shared by every image; the sshd
    # image makes its own.
    --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*'
    --include="$packages"
    "$suite"
)
import_changes=(
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    --change 'ENV LANG=C.UTF-8'
    --change "LABEL $label"
    --change 'CMD ["/bin/bash"]'
)
base_key=$(printf '%s\n' "recipe=1" "${mmdebstrap_args[@]}" "${import_changes[@]}" | digest)
base_ref=claude-bottle-test/base:$base_key

if image_exists "$base_ref"; then
    log "base: $base_ref exists"
else
    tarball=$cache_dir/rootfs-$suite-$base_key.tar
    if [[ ! -s $tarball ]]; then
        command -v mmdebstrap >/dev/null || die "\`mmdebstrap\` not found" "apt-get install mmdebstrap"
        log "base: mmdebstrap $suite ($packages) from $mirror"
        start=$SECONDS
        rm -rf "$tarball.partial"
        mmdebstrap --quiet --format=tar "${mmdebstrap_args[@]}" "$tarball.partial" "$mirror" >&2 ||
            die "mmdebstrap failed for \`$suite\` from \`$mirror\`" \
                "check that the mirror is reachable, or set CLAUDE_BOTTLE_TEST_MIRROR"
        mv "$tarball.partial" "$tarball"
        log "base: rootfs made in $((SECONDS - start)) s"
        # Older tarballs belong to older package lists.
        find "$cache_dir" -maxdepth 1 -name "rootfs-$suite-*.tar" ! -name "${tarball##*/}" -delete
    else
        log "base: reusing $tarball"
    fi
    start=$SECONDS
    docker import "${import_changes[@]}" "$tarball" "$base_ref" >/dev/null
    log "base: imported $base_ref in $((SECONDS - start)) s"
fi
publish CLAUDE_BOTTLE_TEST_BASE_IMAGE "$base_ref"

# --- images FROM base --------------------------------------------------------

# The builds spend their time in the daemon, not on the CPU: run them side by
# side, and beside the stand-in's cargo build.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
declare -A refs=() pids=()

# start_build NAME DIR: builds claude-bottle-test/NAME in the background from
# DIR, whose Dockerfile takes `ARG BASE`, unless the tag for DIR's content
# exists already.
start_build() {
    local name=$1 dir=$2 ref
    ref=claude-bottle-test/$name:$( { printf 'base=%s\n' "$base_ref"; context_tar "$dir"; } | digest)
    refs[$name]=$ref
    if image_exists "$ref"; then
        log "$name: $ref exists"
        return
    fi
    log "$name: building $ref"
    (
        start=$SECONDS
        context_tar "$dir" | DOCKER_BUILDKIT=0 docker build --force-rm \
            --build-arg "BASE=$base_ref" --label "$label" -t "$ref" - >"$work/$name.log" 2>&1
        log "$name: built in $((SECONDS - start)) s"
    ) &
    pids[$name]=$!
}

# finish_build NAME VAR: waits for NAME's build, then publishes it as VAR.
finish_build() {
    local name=$1 var=$2
    if [[ -n ${pids[$name]:-} ]] && ! wait "${pids[$name]}"; then
        cat "$work/$name.log" >&2
        die "docker build failed for \`claude-bottle-test/$name\`" "the build's output is above"
    fi
    publish "$var" "${refs[$name]}"
}

start_build agent "$images_dir/agent"
start_build http "$images_dir/http"
start_build sshd "$images_dir/sshd"
start_build dns "$images_dir/dns"
start_build fence "$images_dir/fence"

# --- the pipelock stand-in ---------------------------------------------------

standin_dockerfile=$images_dir/pipelock-standin/Dockerfile
standin=no
standin_missing() {
    if [[ ${CLAUDE_BOTTLE_TEST_REQUIRE_STANDIN:-} == 1 ]]; then
        die "$1" "$2"
    fi
    log "pipelock-standin: SKIPPED: $1"
    log "  hint: $2"
}
if [[ ! -f $standin_crate/Cargo.toml ]]; then
    standin_missing "the stand-in crate \`${standin_crate#"$repo_root/"}\` does not exist" \
        "tests that need CLAUDE_BOTTLE_PIPELOCK_IMAGE cannot run until it does"
elif [[ ! -f $standin_dockerfile ]]; then
    standin_missing "\`${standin_dockerfile#"$repo_root/"}\` does not exist" \
        "tests that need CLAUDE_BOTTLE_PIPELOCK_IMAGE cannot run until it does"
else
    log "pipelock-standin: cargo build --release"
    # The manifest path works whether or not the crate is a workspace member;
    # cargo's JSON messages say where the binary landed either way.
    binary=$(cd "$repo_root" && cargo build --release --quiet --message-format=json-render-diagnostics \
        --manifest-path "$standin_crate/Cargo.toml" --bin pipelock-standin |
        sed -n 's/.*"executable":"\([^"]*\/pipelock-standin\)".*/\1/p' | tail -n1) ||
        die "cargo build of the pipelock stand-in failed" \
            "run \`cargo build --release --manifest-path ${standin_crate#"$repo_root/"}/Cargo.toml\` to see why"
    [[ -x $binary ]] || die "cargo built no \`pipelock-standin\` binary"
    context=$work/pipelock-standin-context
    mkdir "$context"
    cp -r "$images_dir/pipelock-standin/." "$context/"
    install -m 0755 "$binary" "$context/pipelock-standin"
    start_build pipelock-standin "$context"
    standin=yes
fi

finish_build agent CLAUDE_BOTTLE_TEST_AGENT_IMAGE
finish_build http CLAUDE_BOTTLE_TEST_HTTP_IMAGE
finish_build sshd CLAUDE_BOTTLE_TEST_SSHD_IMAGE
finish_build dns CLAUDE_BOTTLE_TEST_DNS_IMAGE
finish_build fence CLAUDE_BOTTLE_TEST_FENCE_IMAGE
if [[ $standin == yes ]]; then
    finish_build pipelock-standin CLAUDE_BOTTLE_TEST_PIPELOCK_IMAGE
fi
