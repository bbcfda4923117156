#!/usr/bin/env bash
# Copies the offline test images (scripts/build-test-images.sh, which builds
# them on the Docker daemon) into another engine's Docker-compatible API,
# such as Podman's: `copy-test-images.sh unix:///run/podman/podman.sock`.
#
# The `:current` tag of each image is copied when the target lacks that very
# image (same ID), in one `docker save | docker load`, so a rerun with nothing
# new copies nothing. The source is the daemon the docker CLI reaches without
# the argument (DOCKER_HOST, or its default socket). No registry is needed.
set -euo pipefail

target=${1:?usage: copy-test-images.sh TARGET_DOCKER_HOST}
images=(agent http sshd dns fence pipelock-standin)

log() { printf 'copy-test-images: %s\n' "$*" >&2; }

image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

wanted=()
for name in "${images[@]}"; do
    ref=claude-bottle-test/$name:current
    id=$(image_id "$ref")
    if [[ -z $id ]]; then
        log "error: \`$ref\` is not on the source daemon; run scripts/build-test-images.sh first"
        exit 1
    fi
    if [[ $(DOCKER_HOST=$target image_id "$ref") != "$id" ]]; then
        wanted+=("$ref")
    fi
done
if [[ ${#wanted[@]} -eq 0 ]]; then
    log "every test image is in $target already"
    exit 0
fi
log "copying ${wanted[*]} into $target"
start=$SECONDS
docker save "${wanted[@]}" | DOCKER_HOST=$target docker load >/dev/null
for ref in "${wanted[@]}"; do
    if [[ $(DOCKER_HOST=$target image_id "$ref") != "$(image_id "$ref")" ]]; then
        log "error: \`$ref\` did not arrive in $target"
        exit 1
    fi
done
log "copied in $((SECONDS - start)) s"
