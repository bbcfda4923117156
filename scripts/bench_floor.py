#!/usr/bin/env python3
"""The daemon floor of one session, for scripts/bench.sh.

Makes and removes the same resources as `claude-bottle start` with the
fewest Engine API calls, on one kept-alive connection to the daemon's unix
socket (standard library only): two networks on explicit subnets, the proxy
(its config uploaded, on both networks, started, probed until its health
command passes, at the same 50 ms interval as the tool), the agent
(provisioned by one upload, started), the fence (a one-shot container in the
agent's network namespace with `NET_ADMIN`, running the tool's own iptables
script, waited for), one exec of the stub `claude`, then the containers and
networks removed, each kind at once. The proxy gets a fixed address at
creation, where the tool asks the daemon for the one it got: no call for it.
Prints one line per run: the seconds it took.

usage: bench_floor.py RUNS AGENT_IMAGE PROXY_IMAGE FENCE_IMAGE SUBNET_PREFIX PROXY_CONFIG
(SUBNET_PREFIX like 10.214.7 is where the two /28s go: .0/28 and .16/28)
"""

import http.client
import io
import json
import os
import re
import socket
import sys
import tarfile
import threading
import time

SOCKET = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
LABELS = {"claude-bottle.bench": "floor", "claude-bottle.bench.pid": str(os.getpid())}
SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def from_source(path, pattern):
    """A constant of the tool, read from its source: one definition."""
    with open(os.path.join(SRC, path)) as f:
        found = re.search(pattern, f.read(), re.S)
    if not found:
        raise SystemExit(f"bench_floor: no match for {pattern!r} in src/{path}")
    return found.group(1)


FENCE_SCRIPT = from_source("backend/docker/fence.rs", r'const SCRIPT: &str = r#"(.*?)"#;')
LISTEN_PORT = from_source("core/pipelock.rs", r"pub const LISTEN_PORT: u16 = (\d+);")


class Unix(http.client.HTTPConnection):
    def __init__(self):
        super().__init__("localhost")

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(SOCKET)


def call(conn, method, path, body=None, raw=None, headers=None, ok=(200, 201, 204, 304)):
    hdrs = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=hdrs)
    resp = conn.getresponse()
    out = resp.read()
    if resp.status not in ok:
        raise SystemExit(f"{method} {path}: {resp.status} {out[:300]!r}")
    return json.loads(out) if out and resp.getheader("Content-Type", "").startswith("application/json") else out


def tar_of(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, content in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def exec_in(conn, container, cmd):
    created = call(conn, "POST", f"/containers/{container}/exec",
                   {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True})
    # The attached start streams until the command ends; then the connection
    # is the daemon's to close, so it gets one of its own.
    stream = Unix()
    call(stream, "POST", f"/exec/{created['Id']}/start", {"Detach": False, "Tty": False})
    stream.close()
    return call(conn, "GET", f"/exec/{created['Id']}/json")["ExitCode"]


def in_parallel(jobs):
    threads = [threading.Thread(target=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def remover(path):
    def job():
        conn = Unix()
        call(conn, "DELETE", path, ok=(200, 204, 404))
        conn.close()
    return job


def one_run(n, agent_image, proxy_image, fence_image, prefix, proxy_config):
    conn = Unix()
    name = f"claude-bottle-bench-floor-{os.getpid()}-{n}"
    internal = call(conn, "POST", "/networks/create", {
        "Name": f"{name}-internal", "Driver": "bridge", "Internal": True, "CheckDuplicate": True,
        "Options": {"com.docker.network.bridge.inhibit_ipv4": "true"}, "Labels": LABELS,
        "IPAM": {"Config": [{"Subnet": f"{prefix}.0/28", "Gateway": f"{prefix}.1"}]},
    })["Id"]
    egress = call(conn, "POST", "/networks/create", {
        "Name": f"{name}-egress", "Driver": "bridge", "CheckDuplicate": True, "Labels": LABELS,
        "IPAM": {"Config": [{"Subnet": f"{prefix}.16/28", "Gateway": f"{prefix}.17"}]},
    })["Id"]
    host = {"NetworkMode": internal, "SecurityOpt": ["no-new-privileges"], "CapDrop": ["ALL"],
            "PidsLimit": 4096}
    proxy_address = f"{prefix}.2"
    proxy = call(conn, "POST", f"/containers/create?name={name}-proxy", {
        "Image": proxy_image, "Cmd": ["run", "--config", "/etc/pipelock/pipelock.yaml"],
        "Labels": LABELS, "HostConfig": host,
        "NetworkingConfig": {"EndpointsConfig": {
            internal: {"IPAMConfig": {"IPv4Address": proxy_address}}}},
    })["Id"]
    call(conn, "PUT", f"/containers/{proxy}/archive?path=/",
         raw=tar_of({"etc/pipelock/pipelock.yaml": proxy_config}),
         headers={"Content-Type": "application/x-tar"})
    call(conn, "POST", f"/networks/{egress}/connect", {"Container": proxy})
    call(conn, "POST", f"/containers/{proxy}/start")
    agent = call(conn, "POST", f"/containers/create?name={name}-agent", {
        "Image": agent_image, "Entrypoint": ["sleep", "infinity"], "User": "1000:1000",
        "Labels": LABELS, "HostConfig": dict(host, Init=True, Dns=["127.0.0.1"]),
    })["Id"]
    call(conn, "PUT", f"/containers/{agent}/archive?path=/",
         raw=tar_of({"tmp/bench-provision": b"x"}), headers={"Content-Type": "application/x-tar"})
    while exec_in(conn, proxy, ["/pipelock", "healthcheck"]) != 0:
        time.sleep(0.05)
    call(conn, "POST", f"/containers/{agent}/start")
    fence = call(conn, "POST", f"/containers/create?name={name}-fence", {
        "Image": fence_image, "User": "0:0",
        "Entrypoint": ["sh", "-c", FENCE_SCRIPT, "fence", proxy_address, LISTEN_PORT],
        "Labels": LABELS,
        "HostConfig": {"NetworkMode": f"container:{agent}", "SecurityOpt": ["no-new-privileges"],
                       "CapDrop": ["ALL"], "CapAdd": ["NET_ADMIN"], "PidsLimit": 4096},
    })["Id"]
    call(conn, "POST", f"/containers/{fence}/start")
    waited = call(conn, "POST", f"/containers/{fence}/wait")
    if waited.get("StatusCode") != 0:
        raise SystemExit(f"bench_floor: the fence exited with {waited}")
    exec_in(conn, agent, ["claude", "--stub-exit", "0"])
    conn.close()
    in_parallel([remover(f"/containers/{c}?force=1&v=1") for c in (agent, proxy, fence)])
    in_parallel([remover(f"/networks/{n}") for n in (internal, egress)])


def main():
    runs, agent_image, proxy_image, fence_image, prefix, config_path = sys.argv[1:7]
    with open(config_path, "rb") as f:
        proxy_config = f.read()
    for n in range(int(runs)):
        start = time.monotonic()
        one_run(n, agent_image, proxy_image, fence_image, prefix, proxy_config)
        print(f"{time.monotonic() - start:.4f}", flush=True)


if __name__ == "__main__":
    main()
