#!/usr/bin/env python3
"""`make bench`: registry-up's figures side by side with what users would do instead.

Every figure is the median of BENCH_RUNS runs (default 5) with min and max, and a ratio against a
baseline measured in the same run. BENCH_ONLY=certs,up,verify,auth,gc,backup,deep,import,inventory,proxy,s3 runs a subset. Needs root, Podman and the stand-in images (make test-images), and
the release binary (make build); the Makefile target provides both. Prints one Markdown table and
writes it to target/bench/results.md.
"""

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target/release/registry-up"
REGISTRY_IMAGE = "localhost/registry-up-test/registry:latest"
NGINX_IMAGE = "localhost/registry-up-test/nginx:latest"
ARCHIVES = [ROOT / "target/test-images/registry.tar", ROOT / "target/test-images/nginx.tar"]
ARCHIVES_2X = ROOT / "target/test-images/registry-2x.tar"
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
OUT = ROOT / "target/bench"
BLOB_CACHE = Path("/var/lib/containers/cache/blob-info-cache-v1.boltdb")
os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "tests/fixtures/containers.conf"))
MiB = 1024 * 1024


def sh(cmd, **kw):
    kw.setdefault("check", True)
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    try:
        return subprocess.run([str(c) for c in cmd], text=True, **kw)
    except subprocess.CalledProcessError as e:
        sys.exit(f"bench: {' '.join(map(str, cmd))} failed:\n{e.stdout}\n{e.stderr}")


def timed(cmd, **kw):
    start = time.perf_counter()
    sh(cmd, **kw)
    return time.perf_counter() - start


def free_port():
    # Free on IPv4 and IPv6: the appliance listens on both.
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::", 0))
        return s.getsockname()[1]


def stats(samples):
    return statistics.median(samples), min(samples), max(samples)


def fmt(samples, unit="s", scale=1.0):
    med, lo, hi = stats([x * scale for x in samples])
    digits = 3 if unit == "s" and med < 1 else 1
    return f"{med:.{digits}f} {unit} [{lo:.{digits}f}–{hi:.{digits}f}]"


def rm_pod(name):
    subprocess.run(["podman", "pod", "rm", "-f", "-t", "0", name], capture_output=True)
    # A registry-up pod's socket volume goes with the pod; this is for one whose containers went first.
    subprocess.run(["podman", "volume", "rm", "-f", f"{name}-socket"], capture_output=True)


def make_oci_layout(path: Path, size: int, seed: str):
    """An OCI image layout with one uncompressed layer holding `size` random bytes."""
    blobs = path / "blobs/sha256"
    blobs.mkdir(parents=True)
    payload = path / "payload.bin"
    with open(payload, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * MiB)
            f.write(os.urandom(n))
            left -= n
    layer = path / "layer.tar"
    with tarfile.open(layer, "w", format=tarfile.USTAR_FORMAT) as t:
        t.add(payload, arcname=f"{seed}.bin")
    payload.unlink()

    def put_file(src: Path):
        h = hashlib.sha256()
        with open(src, "rb") as f:
            while chunk := f.read(8 * MiB):
                h.update(chunk)
        digest = h.hexdigest()
        src.rename(blobs / digest)
        return f"sha256:{digest}", (blobs / digest).stat().st_size

    def put_bytes(data: bytes):
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}", len(data)

    layer_digest, layer_size = put_file(layer)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
    config_digest, config_size = put_bytes(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    }).encode()
    manifest_digest, manifest_size = put_bytes(manifest)
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_size}]}))


def make_image_set(path: Path):
    """The import test set as one OCI layout: a two-platform index (16 MiB per platform) and four images
    that share a 64 MiB layer, each with 32 MiB of its own, named as docker.io images. 224 MiB of blobs,
    416 MiB as the images name them."""
    blobs = path / "blobs/sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes):
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    def image(arch, layers):
        layer_descs = [dict(put(l), mediaType="application/vnd.oci.image.layer.v1.tar") for l in layers]
        config = put(json.dumps({"architecture": arch, "os": "linux", "rootfs": {
            "type": "layers", "diff_ids": [d["digest"] for d in layer_descs]}}).encode())
        return dict(put(json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": dict(config, mediaType="application/vnd.oci.image.config.v1+json"),
            "layers": layer_descs}).encode()), mediaType="application/vnd.oci.image.manifest.v1+json")

    named = []
    children = [dict(image(arch, [os.urandom(16 * MiB)]), platform={"os": "linux", "architecture": arch})
                for arch in ("amd64", "arm64")]
    index = dict(put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                 "manifests": children}).encode()), mediaType="application/vnd.oci.image.index.v1+json")
    named.append(("bench-multi", index))
    shared = os.urandom(64 * MiB)
    for i in range(4):
        named.append((f"bench-app{i}", image("amd64", [shared, os.urandom(32 * MiB)])))
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        dict(desc, annotations={"org.opencontainers.image.ref.name": f"docker.io/library/{name}:1"})
        for name, desc in named]}))
    return [name for name, _ in named]


def up_args(work: Path, port: int, pod: str):
    return [BIN, "--domain", "localhost", "--san", "127.0.0.1", "--port", port, "--config-dir", work / "cfg",
            "--data-dir", work / "data", "--pod-name", pod, "--registry-image", REGISTRY_IMAGE, "--nginx-image", NGINX_IMAGE]


class ProcessCpu:
    """CPU time (user + system) the processes of some containers use from now on; the client's comes from
    the children of this process (the skopeo that ran meanwhile)."""

    def __init__(self, containers):
        self.pids = {}
        for container in containers:
            out = sh(["podman", "top", container, "hpid", "args"]).stdout.splitlines()[1:]
            for line in out:
                pid, args = line.split(None, 1)
                self.pids[int(pid)] = args.split()[0].split("/")[-1].rstrip(":")
        self.start = {pid: self.cpu(pid) for pid in self.pids}
        self.children = os.times()

    @staticmethod
    def cpu(pid):
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def since(self):
        used = {}
        for pid, name in self.pids.items():
            used[name] = used.get(name, 0) + self.cpu(pid) - self.start[pid]
        now = os.times()
        used["skopeo"] = (now.children_user - self.children.children_user) + (now.children_system - self.children.children_system)
        return {name: secs for name, secs in used.items() if secs >= 0.01}


def peak_rss_kib(cmd):
    out = sh(["/usr/bin/time", "-v", *cmd])
    for line in out.stderr.splitlines():
        if "Maximum resident set size" in line:
            return int(line.split(":")[1])
    sys.exit("bench: /usr/bin/time printed no peak RSS")


rows = []


def row(measure, ours, baseline, ratio, goal, met):
    rows.append((measure, ours, baseline, ratio, goal, "yes" if met else "**no**"))


def bench_cold_up_and_noop(tmp: Path, small_image: Path):
    ours, manual = [], []
    for i in range(RUNS):
        work, port, pod = tmp / f"cold-ours-{i}", free_port(), f"ru-bench-cold-{i}"
        ours.append(timed(up_args(work, port, pod)))
        rm_pod(pod)
        shutil.rmtree(work)
        work, port, pod = tmp / f"cold-manual-{i}", free_port(), f"ru-bench-manual-{i}"
        manual.append(timed([ROOT / "bench/manual-up.sh", work, port, pod, REGISTRY_IMAGE, NGINX_IMAGE, small_image]))
        rm_pod(pod)
        shutil.rmtree(work)
    ratio = statistics.median(ours) / statistics.median(manual)
    row("1. cold `up` → verified (local images)", fmt(ours), f"by hand (openssl, files, play kube, skopeo push+pull): {fmt(manual)}",
        f"{ratio:.2f}×", "≤ 3 s, ratio ≤ 1.0", statistics.median(ours) <= 3 and ratio <= 1.0)

    # 2. A re-run with nothing changed: time, files written, pod restarted.
    work, port, pod = tmp / "noop", free_port(), "ru-bench-noop"
    sh(up_args(work, port, pod))

    def snapshot():
        files = sorted((str(p), p.stat().st_mtime_ns) for p in (work / "cfg").rglob("*") if p.is_file())
        started = [sh(["podman", "inspect", "--format", "{{.State.StartedAt}}", f"{pod}-{c}"]).stdout for c in ("registry", "nginx")]
        return files, started

    before = snapshot()
    noop = [timed(up_args(work, port, pod)) for _ in range(RUNS)]
    after = snapshot()
    written = sum(1 for a, b in zip(before[0], after[0]) if a != b) + abs(len(before[0]) - len(after[0]))
    restarted = before[1] != after[1]
    rm_pod(pod)
    ratio = statistics.median(noop) / statistics.median(ours)
    row("2. no-op re-run (verified)", f"{fmt(noop)}; {written} files written; pod restarted: {'yes' if restarted else 'no'}",
        f"cold `up`: {fmt(ours)}", f"{ratio:.2f}×", "≤ 0.3 s, 0 files, no restart",
        statistics.median(noop) <= 0.3 and written == 0 and not restarted)


MINIMAL_CONF = """server {{
    listen {port} ssl;
    ssl_certificate /etc/nginx/tls/server.crt;
    ssl_certificate_key /etc/nginx/tls/server.key;
    client_max_body_size 0;
    location /v2/ {{
        proxy_pass http://127.0.0.1:{direct};
        proxy_set_header Host $http_host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
    }}
}}
"""


def push_and_pull(big_image: Path, ref: str, certs: Path, dest: Path):
    """skopeo pushes the image as it is (no blob mounted from another repository) to `ref` and pulls it back
    into `dest` (removed after): the two times."""
    BLOB_CACHE.unlink(missing_ok=True)
    pushed = timed(["skopeo", "copy", "-q", "--preserve-digests", "--dest-cert-dir", certs, f"oci:{big_image}", ref])
    pulled = timed(["skopeo", "copy", "-q", "--src-cert-dir", certs, ref, f"dir:{dest}"])
    shutil.rmtree(dest)
    return pushed, pulled


# Variants of our conf.d file (issue 16), each measured in the same runs as direct and ours: the table says
# why the conf is what it is. A variant that leaves the conf unchanged is a bench bug, and stops it.
CONF_VARIANTS = {
    "HTTP/2 offered": lambda c: re.sub(r"(listen \S+) ssl;", r"\1 ssl http2;", c),
    "ssl_buffer_size 4k": lambda c: c.replace("    ssl_session_timeout 1h;\n",
                                              "    ssl_session_timeout 1h;\n    ssl_buffer_size 4k;\n"),
    "proxy buffers at nginx's defaults": lambda c: re.sub(
        r"\n *proxy_(buffer_size|buffers|busy_buffers_size) [^\n]*", "", c),
    "client_body_buffer_size at its default": lambda c: re.sub(r"\n *client_body_buffer_size [^\n]*", "", c),
    "proxy buffers 1m": lambda c: re.sub(r"(proxy_buffer_size|proxy_busy_buffers_size)( +)256k;", r"\1\g<2>1m;",
                                         c).replace("proxy_buffers               4 256k;", "proxy_buffers               4 1m;"),
    "proxy_buffering on (4 × 1m in memory; no temp files)": lambda c: c.replace(
        "proxy_buffering             off;", "proxy_buffering             on;\n        proxy_max_temp_file_size    0;").replace(
        "proxy_buffers               4 256k;", "proxy_buffers               4 1m;").replace(
        "proxy_busy_buffers_size     256k;", "proxy_busy_buffers_size     1m;"),
}
# And one of the image's main nginx.conf (outside conf.d): one worker instead of one per core.
ONE_WORKER = "worker_processes 1"


class ConfSwitch:
    """Puts a variant of our nginx conf in place in the running appliance (nginx reloaded, old workers gone)."""

    def __init__(self, work: Path, pod: str):
        self.conf = work / "ours/cfg/nginx/registry.conf"
        self.original = self.conf.read_text()
        self.container = f"{pod}-nginx"
        self.main = work / "nginx.conf"
        sh(["podman", "cp", f"{self.container}:/etc/nginx/nginx.conf", self.main])
        self.main_original = self.main.read_text()
        assert re.search(r"^worker_processes\s+auto;", self.main_original, re.M), self.main_original

    def to(self, variant):
        text = CONF_VARIANTS[variant](self.original) if variant in CONF_VARIANTS else self.original
        if variant in CONF_VARIANTS and text == self.original:
            sys.exit(f"bench: the variant '{variant}' changes nothing in our conf: fix CONF_VARIANTS")
        self.conf.write_text(text)
        main = self.main_original
        if variant == ONE_WORKER:
            main = re.sub(r"^worker_processes\s+auto;", "worker_processes 1;", main, flags=re.M)
        self.main.write_text(main)
        sh(["podman", "cp", self.main, f"{self.container}:/etc/nginx/nginx.conf"])
        sh(["podman", "exec", self.container, "nginx", "-s", "reload"])
        # Old workers finish and exit; the next transfer must land on a new one.
        for _ in range(100):
            top = sh(["podman", "top", self.container, "args"]).stdout
            if "shutting down" not in top:
                break
            time.sleep(0.05)
        time.sleep(0.3)
        workers = sh(["podman", "top", self.container, "args"]).stdout.count("worker process")
        return workers


def bench_proxy(tmp: Path, big_image: Path, size_mib: int):
    """Ours is the appliance itself (host network, registry on a Unix socket); the baselines share a pod on
    the host's network too, so that no path has a NAT hop: the registry on a port of its own, and the
    classic minimal nginx conf in front of it."""
    work = tmp / "proxy"
    ports = {"direct": free_port(), "ours": free_port(), "minimal": free_port()}
    ours_pod = "ru-bench-proxy-ours"
    sh(up_args(work / "ours", ports["ours"], ours_pod) + ["--no-verify"])
    (work / "min").mkdir(parents=True)
    (work / "min/registry.conf").write_text(MINIMAL_CONF.format(port=ports["minimal"], direct=ports["direct"]))
    (work / "registry").mkdir()
    (work / "registry/config.yml").write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n  delete:\n    enabled: true\nhttp:\n"
        f"  addr: 127.0.0.1:{ports['direct']}\n")
    (work / "data").mkdir()
    pod = "ru-bench-proxy"
    yaml = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
        "spec": {
            "hostNetwork": True,
            "containers": [
                {"name": "registry", "image": REGISTRY_IMAGE, "args": ["serve", "/etc/docker/registry/config.yml"],
                 "volumeMounts": [{"name": "data", "mountPath": "/var/lib/registry"},
                                  {"name": "config", "mountPath": "/etc/docker/registry"}]},
                {"name": "minimal", "image": NGINX_IMAGE,
                 "volumeMounts": [{"name": "min", "mountPath": "/etc/nginx/conf.d"}, {"name": "tls", "mountPath": "/etc/nginx/tls"}]},
            ],
            "volumes": [{"name": n, "hostPath": {"path": str(p), "type": "Directory"}} for n, p in
                        [("data", work / "data"), ("config", work / "registry"), ("min", work / "min"),
                         ("tls", work / "ours/cfg/tls")]],
        },
    }
    (work / "pod.yaml").write_text(json.dumps(yaml))  # JSON is YAML
    sh(["podman", "play", "kube", work / "pod.yaml"])
    certs = work / "certs"
    certs.mkdir()
    shutil.copy(work / "ours/cfg/ca.crt", certs / "ca.crt")
    for target, port in ports.items():
        url = f"https://127.0.0.1:{port}/v2/" if target != "direct" else f"http://127.0.0.1:{port}/v2/"
        for _ in range(200):
            if subprocess.run(["curl", "-sf", "--cacert", certs / "ca.crt", "-o", "/dev/null", url]).returncode == 0:
                break
            time.sleep(0.05)

    # Two pushes: the layer as it is (--preserve-digests: what the proxy adds to a transfer), and skopeo
    # gzip-compressing it on the way (its default for an uncompressed layer), where the client's gzip takes
    # most of this 2-core machine's CPU and every other process's CPU shows up in the wall time.
    push = {t: [] for t in ports}
    gzip_push = {t: [] for t in ports}
    pull = {t: [] for t in ports}
    variants = [*CONF_VARIANTS, ONE_WORKER]
    if os.environ.get("BENCH_VARIANTS"):  # a subset, by name, for trying one out
        variants = [v for v in variants if v in os.environ["BENCH_VARIANTS"].split(",")]
    variant_push = {v: [] for v in variants}
    variant_pull = {v: [] for v in variants}
    variant_workers = {}
    switch = ConfSwitch(work, ours_pod)
    profile = {}
    for i in range(RUNS):
        for variant in variants:
            variant_workers[variant] = switch.to(variant)
            ref = f"docker://127.0.0.1:{ports['ours']}/bench-variant-{i}-{variants.index(variant)}/big:1"
            pushed, pulled = push_and_pull(big_image, ref, certs, work / f"pulled-variant-{i}")
            variant_push[variant].append(pushed)
            variant_pull[variant].append(pulled)
        variant_workers["as it is"] = switch.to(None)
        for target, port in ports.items():
            tls = ["--dest-tls-verify=false"] if target == "direct" else ["--dest-cert-dir", certs]
            src_tls = ["--src-tls-verify=false"] if target == "direct" else ["--src-cert-dir", certs]
            ref = f"docker://127.0.0.1:{port}/bench-{target}-{i}/big:1"
            BLOB_CACHE.unlink(missing_ok=True)  # so blobs are really uploaded, not mounted from another repo
            cpu = ProcessCpu([f"{ours_pod}-nginx", f"{ours_pod}-registry"]) if target == "ours" and i == 0 else None
            push[target].append(timed(["skopeo", "copy", "-q", "--preserve-digests", *tls, f"oci:{big_image}", ref]))
            if cpu:
                profile["as it is"] = cpu.since()
            dest = work / f"pulled-{target}-{i}"
            pull[target].append(timed(["skopeo", "copy", "-q", *src_tls, ref, f"dir:{dest}"]))
            shutil.rmtree(dest)
            BLOB_CACHE.unlink(missing_ok=True)
            cpu = ProcessCpu([f"{ours_pod}-nginx", f"{ours_pod}-registry"]) if target == "ours" and i == 0 else None
            gzip_push[target].append(timed(["skopeo", "copy", "-q", *tls, f"oci:{big_image}",
                                            f"docker://127.0.0.1:{port}/bench-{target}-{i}-gz/big:1"]))
            if cpu:
                profile["gzip on the way"] = cpu.since()
    # Did skopeo take HTTP/2 when it was offered? nginx's access log names the protocol of each request.
    nginx_log = subprocess.run(["podman", "logs", f"{ours_pod}-nginx"], capture_output=True, text=True)
    h2_requests = (nginx_log.stdout + nginx_log.stderr).count('HTTP/2.0"')
    spooled = {}
    for target, container in (("ours", f"{ours_pod}-nginx"), ("minimal", f"{pod}-minimal")):
        logs = subprocess.run(["podman", "logs", container], capture_output=True, text=True)
        spooled[target] = "buffered to a temporary file" in logs.stdout + logs.stderr
    rm_pod(pod)
    rm_pod(ours_pod)
    shutil.rmtree(work)
    for direction, samples, goal in (("push", push, 1.10), ("pull", pull, 1.15),
                                     ("push, skopeo gzip-compressing,", gzip_push, None)):
        direct = statistics.median(samples["direct"])
        mbps = lambda s: f"{size_mib / statistics.median(s):.0f} MiB/s"
        ours = statistics.median(samples["ours"]) / direct
        minimal = statistics.median(samples["minimal"]) / direct
        row(f"3. {direction} {size_mib} MiB through the proxy",
            f"our nginx conf: {fmt(samples['ours'])} ({mbps(samples['ours'])}); spooled to temp files: {'yes' if spooled['ours'] else 'no'}",
            f"direct to the registry: {fmt(samples['direct'])} ({mbps(samples['direct'])}); classic minimal conf: "
            f"{fmt(samples['minimal'])}, {minimal:.2f}×, spooled: {'yes' if spooled['minimal'] else 'no'}",
            f"{ours:.2f}×", f"≤ {goal:.2f}× direct" if goal else "(no goal: CPU-bound, see the profile)",
            goal is None or ours <= goal)
    direct_push, direct_pull = statistics.median(push["direct"]), statistics.median(pull["direct"])
    told = [f"as it is ({variant_workers['as it is']} workers): push {statistics.median(push['ours']) / direct_push:.2f}×, "
            f"pull {statistics.median(pull['ours']) / direct_pull:.2f}×"]
    for variant in variants:
        note = ""
        if variant == "HTTP/2 offered":
            note = f" (skopeo spoke HTTP/2 in {h2_requests} requests)"
        if variant == ONE_WORKER:
            note = f" ({variant_workers[variant]} worker)"
        told.append(f"{variant}{note}: push {fmt(variant_push[variant])}, "
                    f"{statistics.median(variant_push[variant]) / direct_push:.2f}×, pull {fmt(variant_pull[variant])}, "
                    f"{statistics.median(variant_pull[variant]) / direct_pull:.2f}×")
    row(f"3. variants of our nginx conf, {size_mib} MiB as it is", "; ".join(told),
        f"direct to the registry in the same runs: push {fmt(push['direct'])}, pull {fmt(pull['direct'])}", "",
        "(why the conf is what it is)", True)
    row(f"3. CPU of one {size_mib} MiB push through the proxy",
        "; ".join(f"{mode}: " + ", ".join(f"{name} {secs:.2f} s" for name, secs in cpu.items())
                  for mode, cpu in profile.items()),
        "(CPU seconds per process, from /proc, while the push ran)", "", "(profile)", True)


TOOLS = Path(os.environ.get("REGISTRY_UP_TOOLS", Path.home() / ".cache/registry-up-tools"))


class Garage:
    """A three-node Garage cluster on loopback, replication factor 3, one bucket and a key allowed on it
    (as tests/common/garage.rs starts it). The three nodes share this machine's one disk."""

    def __init__(self, work: Path, bucket: str):
        self.bin = TOOLS / "bin/garage"
        if not self.bin.exists():
            sys.exit(f"bench: {self.bin} is missing: run `make deps`")
        secret = os.urandom(32).hex()
        self.configs, self.procs, self.s3_ports = [], [], []
        for i in range(3):
            home = work / f"garage{i}"
            home.mkdir(parents=True)
            rpc, s3 = free_port(), free_port()
            config = home / "garage.toml"
            config.write_text(
                f'metadata_dir = "{home}/meta"\ndata_dir = "{home}/data"\ndb_engine = "sqlite"\n'
                f'replication_factor = 3\nrpc_bind_addr = "127.0.0.1:{rpc}"\nrpc_public_addr = "127.0.0.1:{rpc}"\n'
                f'rpc_secret = "{secret}"\n\n[s3_api]\ns3_region = "garage"\napi_bind_addr = "127.0.0.1:{s3}"\n'
                f'root_domain = ".s3.garage.localhost"\n')
            log = open(home / "garage.log", "w")
            self.procs.append(subprocess.Popen([self.bin, "-c", config, "server"], stdout=log, stderr=log))
            self.configs.append(config)
            self.s3_ports.append(s3)
        ids = [self.eventually(lambda c=c: self.garage(c, "node", "id", "-q", check=False)) for c in self.configs]
        for node in ids[1:]:
            self.garage(self.configs[0], "node", "connect", node)
        for node in ids:
            self.garage(self.configs[0], "layout", "assign", "-z", "dc1", "-c", "1G", node[:16])
        self.garage(self.configs[0], "layout", "apply", "--version", "1")
        for config in self.configs:
            self.eventually(lambda c=config: all(
                n[:16] in (self.garage(c, "status", check=False) or "").split("FAILED NODES")[0] for n in ids))
        self.eventually(lambda: self.garage(self.configs[0], "bucket", "create", bucket, check=False) is not None)
        said = self.garage(self.configs[0], "key", "create", "bench")
        field = lambda name: next(l.split(":", 1)[1].strip() for l in said.splitlines() if l.strip().startswith(name))
        self.key_id, self.secret = field("Key ID"), field("Secret key")
        self.garage(self.configs[0], "bucket", "allow", "--read", "--write", "--owner", bucket, "--key", self.key_id)

    def garage(self, config, *args, check=True):
        out = subprocess.run([self.bin, "-c", config, *args], capture_output=True, text=True)
        if out.returncode != 0:
            if check:
                sys.exit(f"bench: garage {' '.join(args)}: {out.stderr}")
            return None
        return out.stdout

    @staticmethod
    def eventually(f, secs=60):
        end = time.time() + secs
        while time.time() < end:
            value = f()
            if value:
                return value.strip() if isinstance(value, str) else value
            time.sleep(0.2)
        sys.exit("bench: Garage did not come up")

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


def bench_s3(tmp: Path, big_image: Path, size_mib: int):
    """Push and pull through an appliance on S3 storage (a three-node Garage) against one on the
    filesystem, in the same run, with the same image."""
    work = tmp / "s3"
    garage = Garage(work, "bench")
    try:
        key = work / "s3.key"
        key.write_text(f"[default]\naws_access_key_id = {garage.key_id}\naws_secret_access_key = {garage.secret}\n")
        key.chmod(0o600)
        targets = {}
        for name in ("fs", "s3"):
            port, pod = free_port(), f"ru-bench-s3-{name}"
            args = up_args(work / name, port, pod) + ["--no-verify"]
            if name == "s3":
                at = args.index("--data-dir")
                del args[at:at + 2]
                args += ["--storage", "s3", "--s3-endpoint", f"http://127.0.0.1:{garage.s3_ports[0]}",
                         "--s3-bucket", "bench", "--s3-region", "garage", "--s3-credentials", key]
            sh(args)
            certs = work / f"{name}-certs"
            certs.mkdir()
            shutil.copy(work / name / "cfg/ca.crt", certs / "ca.crt")
            targets[name] = (port, pod, certs)
        push = {t: [] for t in targets}
        pull = {t: [] for t in targets}
        for i in range(RUNS):
            for name, (port, _, certs) in targets.items():
                ref = f"docker://127.0.0.1:{port}/bench-{i}/big:1"
                pushed, pulled = push_and_pull(big_image, ref, certs, work / f"pulled-{name}-{i}")
                push[name].append(pushed)
                pull[name].append(pulled)
        for name, (_, pod, _) in targets.items():
            rm_pod(pod)
    finally:
        garage.stop()
    for direction, samples in (("push", push), ("pull", pull)):
        mbps = lambda s: f"{size_mib / statistics.median(s):.0f} MiB/s"
        ratio = statistics.median(samples["s3"]) / statistics.median(samples["fs"])
        row(f"12. {direction} {size_mib} MiB through a replica on S3 (Garage, 3 nodes, replication 3, one disk)",
            f"{fmt(samples['s3'])} ({mbps(samples['s3'])})",
            f"the same appliance on the filesystem: {fmt(samples['fs'])} ({mbps(samples['fs'])})",
            f"{ratio:.2f}×", "(no goal: the price of S3 storage, measured)", True)


def appliance(tmp: Path, name: str):
    """An appliance `ru-bench-NAME` up (not verified), and a cert dir holding only its CA (for skopeo):
    its port, pod, config folder and that cert dir."""
    work, port, pod = tmp / name, free_port(), f"ru-bench-{name}"
    sh(up_args(work, port, pod) + ["--no-verify"])
    certs = tmp / f"{name}-certs"
    certs.mkdir()
    shutil.copy(work / "cfg/ca.crt", certs / "ca.crt")
    return port, pod, work / "cfg", certs


def bench_verify(tmp: Path, small_image: Path, gib_image: Path):
    port, pod, cfg, certs = appliance(tmp, "verify")
    ours, skopeo = [], []
    for i in range(RUNS):
        ours.append(timed([BIN, "verify", "--config-dir", cfg]))
        ref = f"docker://localhost:{port}/bench-skopeo-{i}/small:1"
        BLOB_CACHE.unlink(missing_ok=True)
        start = time.perf_counter()
        sh(["skopeo", "copy", "-q", "--dest-cert-dir", certs, f"oci:{small_image}", ref])
        sh(["skopeo", "copy", "-q", "--src-cert-dir", certs, ref, f"dir:{tmp / f'small-{i}'}"])
        skopeo.append(time.perf_counter() - start)
    ratio = statistics.median(ours) / statistics.median(skopeo)
    # The first verify of an image reads the registry's version in its container (kept by image ID after).
    row("4. `verify` (1 MiB round trip + all checks)", f"{fmt(ours)}; the first, reading the registry's version: {ours[0]:.3f} s",
        f"skopeo copy push + pull of a 1 MiB image: {fmt(skopeo)}",
        f"{ratio:.2f}×", "≤ 0.5×", ratio <= 0.5)

    # 5. verify --size 1GiB: peak memory and throughput, against skopeo moving a 1 GiB image.
    rss, walls, sk_rss, sk_walls = [], [], [], []
    for i in range(RUNS):
        start = time.perf_counter()
        rss.append(peak_rss_kib([BIN, "verify", "--config-dir", cfg, "--size", "1GiB", "--timeout", "600"]))
        walls.append(time.perf_counter() - start)
        ref = f"docker://localhost:{port}/bench-big-{i}/big:1"
        BLOB_CACHE.unlink(missing_ok=True)
        start = time.perf_counter()
        push_rss = peak_rss_kib(["skopeo", "copy", "-q", "--dest-cert-dir", certs, f"oci:{gib_image}", ref])
        dest = tmp / f"gib-{i}"
        pull_rss = peak_rss_kib(["skopeo", "copy", "-q", "--src-cert-dir", certs, ref, f"dir:{dest}"])
        sk_walls.append(time.perf_counter() - start)
        sk_rss.append(max(push_rss, pull_rss))
        shutil.rmtree(dest)
    rm_pod(pod)
    ratio = statistics.median(walls) / statistics.median(sk_walls)
    row("5. `verify --size 1GiB`", f"peak RSS {fmt(rss, 'MB', 1 / 1024)}; {fmt(walls)} ({2048 / statistics.median(walls):.0f} MiB/s moved)",
        f"skopeo push + pull of 1 GiB: peak RSS {fmt(sk_rss, 'MB', 1 / 1024)}; {fmt(sk_walls)}",
        f"{ratio:.2f}× time, {statistics.median(rss) / statistics.median(sk_rss):.2f}× RSS", "peak RSS ≤ 64 MB",
        statistics.median(rss) / 1024 <= 64)


def bench_import(tmp: Path):
    """10. `import` of the test set (an OCI layout on disk) against `skopeo sync` of the same images (as
    `dir:` copies on disk, made beforehand) into the same appliance, each run under a fresh path so every
    blob is really sent; skopeo's blob cache is emptied first, as it would be on a new site."""
    port, pod, cfg, certs = appliance(tmp, "import")
    layout = tmp / "import-set"
    names = make_image_set(layout)
    dirs = tmp / "import-dirs"
    dirs.mkdir()
    for name in names:
        sh(["skopeo", "copy", "-q", "--all", "--preserve-digests", f"oci:{layout}:docker.io/library/{name}:1",
            f"dir:{dirs / name}"])
    ours, skopeo = [], []
    for i in range(RUNS):
        ours.append(timed([BIN, "import", layout, "--prefix", f"ours-{i}", "--config-dir", cfg]))
        BLOB_CACHE.unlink(missing_ok=True)
        skopeo.append(timed(["skopeo", "sync", "--all", "--preserve-digests", "--src", "dir", "--dest", "docker",
                             "--dest-cert-dir", certs, dirs, f"localhost:{port}/skopeo-{i}"]))
    # The same images arrived both ways: every name, the same digest.
    for name in names:
        theirs = sh(["skopeo", "inspect", "--raw", "--cert-dir", certs,
                     f"docker://localhost:{port}/skopeo-0/{name}:latest"]).stdout
        mine = sh(["skopeo", "inspect", "--raw", "--cert-dir", certs,
                   f"docker://localhost:{port}/ours-0/docker.io/library/{name}:1"]).stdout
        if hashlib.sha256(theirs.encode()).hexdigest() != hashlib.sha256(mine.encode()).hexdigest():
            sys.exit(f"bench: import and skopeo sync stored {name} differently")
    rm_pod(pod)
    ratio = statistics.median(ours) / statistics.median(skopeo)
    row("10. `import` of 5 images (1 two-platform index; 4 sharing a 64 MiB layer; 224 MiB of blobs)",
        fmt(ours), f"`skopeo sync --all` of the same images: {fmt(skopeo)}", f"{ratio:.2f}×", "≤ 0.70×", ratio <= 0.70)


def push_layout(layout: Path, port: int, certs: Path, dest: str):
    BLOB_CACHE.unlink(missing_ok=True)
    sh(["skopeo", "copy", "-q", "--dest-cert-dir", certs, f"oci:{layout}", f"docker://localhost:{port}/{dest}"])


def bench_gc(tmp: Path, n: int = 20):
    """gc of an appliance holding N images whose tags then moved (N garbage images of 1 MiB): our read-only
    mark-and-sweep with verify --deep, against distribution's own `garbage-collect --dry-run` (its mark
    phase alone, over the same storage)."""
    work, port, pod = tmp / "gc", free_port(), "ru-bench-gc"
    sh(up_args(work, port, pod) + ["--no-verify"])
    certs = work / "cfg"
    for i in range(n):
        for gen in ("old", "new"):
            layout = tmp / f"gc-{i}-{gen}"
            make_oci_layout(layout, MiB, f"gc-{i}-{gen}")
            push_layout(layout, port, certs, f"bench/img{i}:1")
            shutil.rmtree(layout)
    theirs = [timed(["podman", "exec", f"{pod}-registry", "registry", "garbage-collect", "--dry-run",
                     "/etc/registry-up/config.yml"]) for _ in range(RUNS)]
    dry = [timed([BIN, "gc", "--dry-run", "--config-dir", certs]) for _ in range(RUNS)]
    start = time.perf_counter()
    out = sh([BIN, "gc", "--config-dir", certs]).stdout
    run = time.perf_counter() - start
    freed = next((l for l in out.splitlines() if l.startswith("gc freed")), "gc freed ?")
    rm_pod(pod)
    shutil.rmtree(work)
    ratio = statistics.median(dry) / statistics.median(theirs)
    row(f"8. gc of {n} images whose tags moved", f"dry run {fmt(dry)}; the run (read-only, collect, read-write, "
        f"verify --deep) {run:.2f} s; {freed.removeprefix('gc ')}",
        f"distribution's `garbage-collect --dry-run` (mark only): {fmt(theirs)}", f"{ratio:.2f}× (dry runs)",
        "(no goal)", True)


def write_storage(data: Path, repos: int, tags_per_repo: int):
    """A registry's filesystem storage written straight to disk (distribution's layout, the same in 2.x and
    3.x), so that a registry of thousands of tags is there in seconds: `repos` repositories of
    `tags_per_repo` tags each, every image its own config and manifest over 2 of 20 shared small layers, and
    the first tag of every repository an index of two platform images. Returns the tag count."""
    v2 = data / "docker/registry/v2"
    written = set()

    def blob(content: bytes) -> str:
        hexd = hashlib.sha256(content).hexdigest()
        if hexd not in written:
            d = v2 / "blobs/sha256" / hexd[:2] / hexd
            d.mkdir(parents=True, exist_ok=True)
            (d / "data").write_bytes(content)
            written.add(hexd)
        return hexd

    def link(path: Path, hexd: str):
        path.mkdir(parents=True, exist_ok=True)
        (path / "link").write_text(f"sha256:{hexd}")

    layers = [os.urandom(1024) for _ in range(20)]
    layer_hex = [blob(l) for l in layers]
    oci_manifest = "application/vnd.oci.image.manifest.v1+json"
    tags = 0
    for r in range(repos):
        repo = v2 / "repositories" / f"scale/r{r // 100}/app{r}"
        def image(name: str, arch: str):
            config = json.dumps({"architecture": arch, "os": "linux", "config": {"Labels": {"n": name}},
                                 "rootfs": {"type": "layers", "diff_ids": []}}).encode()
            chex = blob(config)
            picked = [layer_hex[(r + k) % 20] for k in (0, 7)]
            for h in [chex, *picked]:
                link(repo / "_layers/sha256" / h, h)
            manifest = json.dumps({"schemaVersion": 2, "mediaType": oci_manifest,
                                   "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                              "digest": f"sha256:{chex}", "size": len(config)},
                                   "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                               "digest": f"sha256:{h}", "size": 1024} for h in picked]}).encode()
            mhex = blob(manifest)
            link(repo / "_manifests/revisions/sha256" / mhex, mhex)
            return mhex, len(manifest)
        for t in range(tags_per_repo):
            if t == 0:
                children = [(image(f"{r}-{t}-{a}", a), a) for a in ("amd64", "arm64")]
                index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                    "manifests": [{"mediaType": oci_manifest, "digest": f"sha256:{h}", "size": n,
                                                   "platform": {"os": "linux", "architecture": a}}
                                                  for (h, n), a in children]}).encode()
                top = blob(index)
                link(repo / "_manifests/revisions/sha256" / top, top)
            else:
                top, _ = image(f"{r}-{t}", "amd64")
            tag = repo / "_manifests/tags" / f"v{t}"
            link(tag / "current", top)
            link(tag / "index/sha256" / top, top)
            tags += 1
    return tags


def step_seconds(out: str, first: str, last: str) -> float:
    """The seconds `up`'s steps took from the one named `first` to the one named `last`, both included (each
    step line ends with its duration)."""
    total, inside = 0.0, False
    for line in out.splitlines():
        m = re.match(r"^(ok|FAIL) +([^:(]+?)(:.*)? \(([0-9.]+) s\)$", line)
        if not m:
            continue
        name = m.group(2).strip()
        inside = inside or name == first
        if inside:
            total += float(m.group(4))
        if name == last:
            break
    return total


def bench_inventory(tmp: Path):
    """The inventory of what a registry serves (verify --record), at 1 000 and 10 000 tags, against the
    by-hand way (skopeo list-tags per repository, skopeo inspect --raw per tag), and the read-only window of a
    guarded upgrade of that registry (2.x layout and back: read-only through the second inventory)."""
    figures = {}
    for repos in (200, 2000):
        work, port, pod = tmp / f"inv-{repos}", free_port(), f"ru-bench-inv-{repos}"
        start = time.perf_counter()
        tags = write_storage(work / "data", repos, 5)
        wrote = time.perf_counter() - start
        sh(up_args(work, port, pod) + ["--no-verify", "--image-archive", ARCHIVES[0], "--image-archive", ARCHIVES[1]])
        cfg, record = work / "cfg", work / "inventory.json"
        ours = [timed([BIN, "verify", "--config-dir", cfg, "--record", record, "--jobs", "8", "--timeout", "600"])
                for _ in range(RUNS)]
        listed = json.loads(record.read_text())["counts"]["tags"]
        assert listed == tags, f"the inventory holds {listed} tags, not {tags}"
        # By hand, once (12 000 skopeo runs at 10 000 tags take minutes).
        start = time.perf_counter()
        names = [f"scale/r{r // 100}/app{r}" for r in range(repos)]
        for name in names:
            ref = f"docker://localhost:{port}/{name}"
            listed_tags = json.loads(sh(["skopeo", "list-tags", "--cert-dir", cfg, ref]).stdout)["Tags"]
            for tag in listed_tags:
                sh(["skopeo", "inspect", "--raw", "--cert-dir", cfg, f"{ref}:{tag}"])
        by_hand = time.perf_counter() - start
        # The read-only window of a guarded upgrade, there and back.
        windows, totals = [], []
        for image, archive in [(REGISTRY_IMAGE.replace("registry:", "registry-2x:"), ARCHIVES_2X), (REGISTRY_IMAGE, ARCHIVES[0])]:
            start = time.perf_counter()
            out = sh([BIN, "--config-dir", cfg, "--registry-image", image, "--image-archive", archive, "--no-verify"]).stdout
            totals.append(time.perf_counter() - start)
            # The window: from going read-only through the proof that ends it (writes taken again). The whole
            # `up` also holds the inventory before it and the reading of every tag after it.
            windows.append(step_seconds(out, "read-only", "inventory after"))
        rm_pod(pod)
        shutil.rmtree(work)
        figures[tags] = (statistics.median(ours), by_hand, max(windows))
        ratio = statistics.median(ours) / by_hand
        goal = ratio <= 0.05 and max(windows) <= 5
        row(f"13. inventory of {tags} tags in {repos} repositories (`verify --record`)",
            f"{fmt(ours)} (storage written in {wrote:.1f} s); guarded upgrade's read-only window {windows[0]:.1f} s "
            f"and {windows[1]:.1f} s (2.x layout and back; the whole `up` {totals[0]:.1f} s and {totals[1]:.1f} s)",
            f"by hand, skopeo list-tags per repository + inspect --raw per tag, once: {by_hand:.1f} s",
            f"{ratio:.3f}×", "≤ 0.05×; window ≤ 5 s", goal)
    (small, big) = sorted(figures)
    growth = lambda i: figures[big][i] / figures[small][i]
    row("13. growth from 1 000 to 10 000 tags", f"inventory {growth(0):.1f}×, read-only window {growth(2):.1f}×",
        f"by hand {growth(1):.1f}×", "-", "≤ 10× (linear)", growth(0) <= 12 and growth(2) <= 12)


def bench_backup(tmp: Path, gib_image: Path):
    """backup and restore of an appliance holding 1 GiB, in MB/s, against tar of the same folders."""
    work, port, pod = tmp / "backup", free_port(), "ru-bench-backup"
    sh(up_args(work, port, pod) + ["--no-verify"])
    push_layout(gib_image, port, work / "cfg", "bench/big:1")
    size = sum(p.stat().st_size for p in (work / "data").rglob("*") if p.is_file())
    ours, tars, restores, untars = [], [], [], []
    for i in range(RUNS):
        out = tmp / f"backup-{i}.tar"
        ours.append(timed([BIN, "backup", "--out", out, "--config-dir", work / "cfg"]))
        out.unlink()
        theirs = tmp / f"tar-{i}.tar"
        tars.append(timed(["tar", "-cf", theirs, "-C", work, "cfg", "data"]))
        theirs.unlink()
    backup = tmp / "backup.tar"
    sh([BIN, "backup", "--out", backup, "--config-dir", work / "cfg"])
    plain = tmp / "plain.tar"
    sh(["tar", "-cf", plain, "-C", work, "cfg", "data"])
    sh([BIN, "down", "--purge", "--yes", "--config-dir", work / "cfg"])
    for i in range(RUNS):
        cfg, data = tmp / f"restore-cfg-{i}", tmp / f"restore-data-{i}"
        # Another pod name is not needed: each restore is taken down before the next.
        restores.append(timed([BIN, "restore", backup, "--config-dir", cfg, "--data-dir", data]))
        sh([BIN, "down", "--purge", "--yes", "--config-dir", cfg])
        shutil.rmtree(cfg, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)
        dest = tmp / f"untar-{i}"
        dest.mkdir()
        untars.append(timed(["tar", "-xf", plain, "-C", dest]))
        shutil.rmtree(dest)
    backup.unlink()
    plain.unlink()
    rm_pod(pod)
    shutil.rmtree(work, ignore_errors=True)
    mbps = lambda s: f"{size / MiB / statistics.median(s):.0f} MiB/s"
    row("9. backup of 1 GiB (read-only, every file checksummed)", f"{fmt(ours)} ({mbps(ours)})",
        f"tar -cf of the same folders: {fmt(tars)} ({mbps(tars)})",
        f"{statistics.median(ours) / statistics.median(tars):.2f}×", "(no goal)", True)
    row("9. restore of 1 GiB (checked whole, laid down, up, verify --deep)", f"{fmt(restores)} ({mbps(restores)})",
        f"tar -xf: {fmt(untars)} ({mbps(untars)})",
        f"{statistics.median(restores) / statistics.median(untars):.2f}×", "(no goal)", True)


def bench_deep(tmp: Path, gib_image: Path):
    """14. verify --deep of an appliance holding 1 GiB, every blob's bytes hashed on the host (both cores),
    in MiB/s against sha256sum of the same blob files (one process, as an admin would run it)."""
    port, pod, cfg, certs = appliance(tmp, "deep")
    push_layout(gib_image, port, cfg, "bench/big:1")
    blobs = [p for p in (tmp / "deep" / "data").rglob("data") if p.is_file() and "/blobs/" in str(p)]
    size = sum(p.stat().st_size for p in blobs)
    ours, theirs = [], []
    for i in range(RUNS):
        ours.append(timed([BIN, "verify", "--deep", "--timeout", "600", "--config-dir", cfg]))
        theirs.append(timed(["sha256sum", *blobs], stdout=subprocess.DEVNULL))
    rm_pod(pod)
    mbps = lambda s: size / MiB / statistics.median(s)
    ratio = mbps(ours) / mbps(theirs)
    row("14. `verify --deep` of 1 GiB on the appliance host (all checks, every blob's bytes hashed)",
        f"{fmt(ours)} ({mbps(ours):.0f} MiB/s)",
        f"sha256sum of the same {len(blobs)} blob files: {fmt(theirs)} ({mbps(theirs):.0f} MiB/s)",
        f"{ratio:.2f}× throughput", "≥ 0.8× throughput", ratio >= 0.8)


def bench_auth(tmp: Path):
    """7. What --auth costs a client: the registry checks the bcrypt hash on every request."""
    kinds = {"none": [], "generated": ["--auth"], "chosen": ["--auth", "--auth-password-stdin"]}
    cfgs, samples = {}, {k: [] for k in kinds}
    for kind, extra in kinds.items():
        work, pod = tmp / f"auth-{kind}", f"ru-bench-auth-{kind}"
        # A person's password (cost 10) for comparison with the generated one (cost 5).
        sh(up_args(work, free_port(), pod) + ["--no-verify", *extra], input="correct-horse-battery-staple\n")
        cfgs[kind] = work / "cfg"
    for _ in range(RUNS):  # interleaved, so drift on the machine hits all three alike
        for kind, cfg in cfgs.items():
            samples[kind].append(timed([BIN, "verify", "--config-dir", cfg]))
    for kind in kinds:
        rm_pod(f"ru-bench-auth-{kind}")
    ratio = statistics.median(samples["generated"]) / statistics.median(samples["none"])
    chosen = statistics.median(samples["chosen"]) / statistics.median(samples["none"])
    row("7. `verify` (1 MiB) with `--auth`, generated password (bcrypt cost 5)", fmt(samples["generated"]),
        f"the same without auth: {fmt(samples['none'])}; with a password from stdin (cost 10): "
        f"{fmt(samples['chosen'])}, {chosen:.2f}×", f"{ratio:.2f}×", "≤ 1.30× no auth", ratio <= 1.3)


OPENSSL_CERTS = r"""
set -e
cd "$1"
openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=bench CA" -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt
openssl ecparam -name prime256v1 -genkey -noout -out server.key 2>/dev/null
openssl req -new -key server.key -subj "/CN=localhost" -out server.csr
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\n' > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -sha256 -extfile server.ext -out server.crt 2>/dev/null
"""


def bench_certs(tmp: Path):
    ours, openssl = [], []
    for i in range(RUNS):
        out = tmp / f"render-{i}"
        ours.append(timed([BIN, "render", "--domain", "localhost", "--san", "127.0.0.1", "--out", out]))
        d = tmp / f"openssl-{i}"
        d.mkdir()
        openssl.append(timed(["bash", "-c", OPENSSL_CERTS, "bench", d]))
    ratio = statistics.median(ours) / statistics.median(openssl)
    row("6. CA + server certificate", f"`registry-up render` (certificates and every file): {fmt(ours)}",
        f"the openssl commands (CA, key, CSR, signed leaf): {fmt(openssl)}", f"{ratio:.2f}×", "(no goal)", True)


def main():
    if os.geteuid() != 0:
        sys.exit("bench: run as root (it starts rootful Podman pods)")
    for path in [BIN, *ARCHIVES]:
        if not path.exists():
            sys.exit(f"bench: {path} is missing: run `make bench` (it builds it)")
    for archive in ARCHIVES:
        sh(["podman", "load", "-q", "-i", archive])
    OUT.mkdir(parents=True, exist_ok=True)
    size_mib = int(os.environ.get("BENCH_PROXY_MIB", "512"))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="registry-up-bench-", dir=OUT) as t:
        tmp = Path(t)
        small, big, gib = tmp / "img-1m", tmp / "img-big", tmp / "img-1g"
        make_oci_layout(small, MiB, "small")
        make_oci_layout(big, size_mib * MiB, "big")
        make_oci_layout(gib, 1024 * MiB if not os.environ.get("BENCH_ONLY") or {"verify", "backup", "deep"} & set(os.environ["BENCH_ONLY"].split(",")) else MiB, "gib")
        only = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))  # e.g. BENCH_ONLY=proxy
        wanted = lambda name: not only or name in only
        try:
            if wanted("certs"):
                bench_certs(tmp)
            if wanted("up"):
                bench_cold_up_and_noop(tmp, small)
            if wanted("verify"):
                bench_verify(tmp, small, gib)
            if wanted("auth"):
                bench_auth(tmp)
            if wanted("gc"):
                bench_gc(tmp)
            if wanted("backup"):
                bench_backup(tmp, gib)
            if wanted("deep"):
                bench_deep(tmp, gib)
            if wanted("import"):
                bench_import(tmp)
            if wanted("inventory"):
                bench_inventory(tmp)
            shutil.rmtree(gib)
            if wanted("proxy"):
                bench_proxy(tmp, big, size_mib)
            if wanted("s3"):
                bench_s3(tmp, big, size_mib)
        finally:
            for pod in ["ru-bench-s3-fs", "ru-bench-s3-s3", "ru-bench-noop", "ru-bench-proxy", "ru-bench-proxy-ours", "ru-bench-verify", "ru-bench-gc", "ru-bench-backup", "ru-bench-deep", "ru-bench-import", "ru-bench-inv-200", "ru-bench-inv-2000"] + [f"ru-bench-auth-{k}" for k in ("none", "generated", "chosen")] + [f"ru-bench-{k}-{i}" for k in ("cold", "manual") for i in range(RUNS)]:
                rm_pod(pod)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
    podman = sh(["podman", "--version"]).stdout.strip()
    header = (f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores ({cpu}), "
              f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 1024**3} GiB, kernel {os.uname().release}, {podman}; "
              f"median of {RUNS} runs [min–max]; total {time.perf_counter() - started:.0f} s.\n\n")
    rows.sort(key=lambda r: r[0])
    table = "| measure | registry-up | baseline (same run) | ratio | goal | met |\n|---|---|---|---|---|---|\n"
    table += "".join(f"| {' | '.join(r)} |\n" for r in rows)
    (OUT / "results.md").write_text(header + table)
    print(header + table)


if __name__ == "__main__":
    main()
