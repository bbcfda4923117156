#!/usr/bin/env bash
# Rootless Podman on this host, for testing claude-bottle against it: sets up
# a dedicated unprivileged user running `podman system service`, runs the
# real-daemon tests that cover every guarantee against it, and takes it all
# down again. Run as root (it creates a user); Debian's podman, uidmap,
# slirp4netns and catatonit must be installed.
#
#   rootless-podman.sh up      set up; prints `DOCKER_HOST=unix://...` on stdout
#   rootless-podman.sh down    undo what `up` made, and nothing else
#   rootless-podman.sh test    up, the rootless Podman part of scripts/test.sh
#                              (extra arguments go to nextest), then down, even
#                              when the tests fail
#
# What `up` makes, each only when missing, recorded in $state so that `down`
# undoes exactly that:
# - the user `cbrootless` (a home for its image storage, no login shell);
# - its subordinate id ranges in /etc/subuid and /etc/subgid;
# - its runtime directory /run/user/UID, mode 0700 (what `loginctl
#   enable-linger` would make on a host with systemd-logind);
# - mode 0666 on /dev/net/tun, the usual mode, where the host keeps it to
#   root: slirp4netns opens it as the user to give the rootless network
#   namespace its way out;
# - the service at unix:///run/user/UID/podman/podman.sock, run as the user.
# The socket is the user's, mode 0600: root (these tests) reaches it anyway;
# a real user runs the tool as themselves against their own socket.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

user=${CLAUDE_BOTTLE_ROOTLESS_USER:-cbrootless}
state=/run/claude-bottle-rootless-podman.undo
# A range far from the usual 100000 ones of real users.
subids=1100000-1165535

log() { printf 'rootless-podman: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "run as root: it creates the user \`$user\`"

as_user() {
    local uid
    uid=$(id -u "$user")
    runuser -u "$user" -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$(getent passwd "$user" | cut -d: -f6)" \
        USER="$user" XDG_RUNTIME_DIR="/run/user/$uid" "$@"
}

socket_of() { echo "/run/user/$(id -u "$user")/podman/podman.sock"; }

answers() { DOCKER_HOST=unix://$1 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# Records an undo step; `down` runs them last first.
made() { printf '%s\n' "$1" >>"$state"; }

up() {
    local missing=() tool
    for tool in podman newuidmap newgidmap slirp4netns /usr/libexec/podman/catatonit; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    [ ${#missing[@]} -eq 0 ] ||
        die "missing ${missing[*]} (apt-get install podman uidmap slirp4netns catatonit)"
    if ! id "$user" >/dev/null 2>&1; then
        log "creating the user \`$user\`"
        useradd --create-home --shell /usr/sbin/nologin --comment 'claude-bottle rootless Podman tests' "$user"
        made "userdel --remove $user"
    fi
    local uid home
    uid=$(id -u "$user")
    home=$(getent passwd "$user" | cut -d: -f6)
    # Podman 4.3 picks `vfs` for a user (a full copy of every layer) unless
    # told; the kernel's overlayfs works in a user namespace since 5.11.
    if [ ! -f "$home/.config/containers/storage.conf" ]; then
        as_user mkdir -p "$home/.config/containers"
        printf '[storage]\ndriver = "overlay"\n' | as_user tee "$home/.config/containers/storage.conf" >/dev/null
    fi
    if ! grep -q "^$user:" /etc/subuid || ! grep -q "^$user:" /etc/subgid; then
        log "giving \`$user\` subordinate ids $subids"
        usermod --add-subuids "$subids" --add-subgids "$subids" "$user"
        made "usermod --del-subuids $subids --del-subgids $subids $user"
    fi
    local run=/run/user/$uid
    if [ ! -d "$run" ]; then
        install -d -m 0755 /run/user
        install -d -m 0700 -o "$user" -g "$user" "$run"
        made "rm -rf $run"
    fi
    local tun_mode
    tun_mode=$(stat -c %a /dev/net/tun)
    if [ "$tun_mode" != 666 ]; then
        log "chmod 0666 /dev/net/tun (was $tun_mode)"
        chmod 0666 /dev/net/tun
        made "chmod $tun_mode /dev/net/tun"
    fi
    local socket
    socket=$(socket_of)
    if ! answers "$socket"; then
        log "starting podman system service at unix://$socket as \`$user\`"
        as_user mkdir -p "${socket%/*}"
        # setsid: its own process group, which `down` ends as one.
        setsid runuser -u "$user" -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            HOME="$(getent passwd "$user" | cut -d: -f6)" USER="$user" XDG_RUNTIME_DIR="$run" \
            podman system service --time=0 "unix://$socket" \
            </dev/null >"$run/podman-service.log" 2>&1 &
        local pid=$!
        made "kill -- -$pid"
        local _
        for _ in $(seq 1 150); do
            answers "$socket" && break
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        answers "$socket" || die "the service did not answer at unix://$socket; its log:
$(cat "$run/podman-service.log" 2>/dev/null)"
    fi
    echo "DOCKER_HOST=unix://$socket"
}

down() {
    [ -f "$state" ] || {
        log "nothing to undo"
        return 0
    }
    local steps step failed=0
    mapfile -t steps <"$state"
    local i
    for ((i = ${#steps[@]} - 1; i >= 0; i--)); do
        step=${steps[$i]}
        case $step in
        "kill -- -"*)
            # The service, then every process of the user (conmon, the
            # rootless network namespace's slirp4netns, catatonit pause).
            eval "$step" 2>/dev/null || true
            sleep 1
            pkill -KILL -u "$user" 2>/dev/null || true
            sleep 0.5
            ;;
        "userdel "*)
            # Its containers' files are owned by subordinate ids: remove
            # them as the user, in its namespace, before the home goes.
            as_user podman system reset --force >/dev/null 2>&1 || true
            pkill -KILL -u "$user" 2>/dev/null || true
            sleep 0.5
            eval "$step" || failed=1
            ;;
        *) eval "$step" || failed=1 ;;
        esac
    done
    rm -f "$state"
    [ "$failed" -eq 0 ] || die "some of the set-up could not be undone (above)"
    log "undone"
}

case ${1:-} in
up) up ;;
down) down ;;
test)
    shift
    trap down EXIT
    host=$(up)
    CLAUDE_BOTTLE_TEST_ONLY=rootless-podman CLAUDE_BOTTLE_TEST_ROOTLESS_PODMAN_HOST=${host#DOCKER_HOST=} \
        bash scripts/test.sh "$@"
    ;;
*) die "usage: rootless-podman.sh up|down|test [NEXTEST ARGS]" ;;
esac
