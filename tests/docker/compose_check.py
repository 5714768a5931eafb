#!/usr/bin/env python3
"""Checks of docker/ that need no Docker engine (run by ctest, tests/docker/CMakeLists.txt).

    compose_check.py config               docker-compose.yml parses (Debian's docker-compose v1) and
                                          has the shape the cluster needs; .env.example covers it
    compose_check.py haproxy              haproxy -c accepts docker/haproxy.cfg; its ports match
    compose_check.py dockerfile BIN_DIR   the Dockerfile runs the scripts CI runs; the runtime stage's
                                          packages hold every library the binaries load
    compose_check.py env BIN_DIR          every IM_* variable the compose file gives an im-* service
                                          is a configuration key of that binary, with that value
    compose_check.py run BIN_DIR          starts im-rest, im-transfer and two im-connectors with the
                                          compose file's command and environment (through
                                          docker/im-entrypoint, checked by docker/im-healthcheck)
                                          against the servers of scripts/test; LDAP login works
    compose_check.py ldap                 the openldap image's entry point, with the compose file's
                                          environment, seeds and serves the demo directory; im-rest's
                                          LDAP settings match it
    compose_check.py files                im-rest's files.dir is on a named volume, shared by every
                                          service that runs im-rest (issue 17, item 2)

`run` changes only what must differ outside Docker, listed in LOCAL_MAP below: the servers' host
names and ports, each process's listen ports (the replicas share one network here), the
credentials of the test servers, a throwaway database and a Redis key prefix (isolation from other
tests sharing the servers). Everything else is the compose file's, byte for byte.
Exit status 0 when every check passes; each failure is printed as a line starting with FAIL.
"""

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
IM_SERVICES = {"rest": "im-rest", "transfer": "im-transfer", "connector": "im-connector"}
PREFIX = {"im-rest": "IM_REST_", "im-transfer": "IM_TRANSFER_", "im-connector": "IM_CONNECTOR_"}
SERVERS = {"redis", "mariadb", "rabbitmq", "openldap"}

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, flush=True)


def ok(msg):
    print("ok: " + msg, flush=True)


def finish():
    if failures:
        print(f"{len(failures)} check(s) failed", flush=True)
        sys.exit(1)
    print("all checks passed", flush=True)
    sys.exit(0)


def clean_env(extra=None):
    """A minimal environment: nothing of the caller's IM_* variables leaks into a check."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    env.update(extra or {})
    return env


def compose_config(env_file=None):
    """The compose file as Docker would see it (variables substituted, anchors merged)."""
    if shutil.which("docker-compose") is None:
        fail("docker-compose is not installed: run scripts/install-deps.sh --compose")
        finish()
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty:
        # Without env_file: the defaults in the file (an empty env file keeps an operator's
        # docker/.env out of the check).
        args = ["docker-compose", "--project-directory", str(DOCKER), "-f", str(COMPOSE),
                "--env-file", str(env_file) if env_file else empty.name, "config"]
        r = subprocess.run(args, env=clean_env(), capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"docker-compose config: exit {r.returncode}: {r.stderr.strip()}")
        finish()
    return yaml.safe_load(r.stdout)


def env_of(service):
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE form
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


# ----------------------------------------------------------------------------------------- config
def check_config():
    cfg = compose_config()
    services = cfg.get("services", {})
    want = SERVERS | set(IM_SERVICES) | {"connector-lb", "cli", "pki"}
    if set(services) != want:
        fail(f"services {sorted(services)}, expected {sorted(want)}")
    else:
        ok(f"docker-compose config parses; services: {', '.join(sorted(services))}")

    # Start order is automatic: every dependency waits for a health check.
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            c = cond.get("condition") if isinstance(cond, dict) else None
            if dep == "pki":  # the one-shot that makes the link certificates: waited for to finish
                if c != "service_completed_successfully":
                    fail(f"{name}: depends_on pki has condition {c!r}, expected service_completed_successfully")
                continue
            if c != "service_healthy":
                fail(f"{name}: depends_on {dep} has condition {c!r}, expected service_healthy")
            dep_svc = services.get(dep, {})
            if dep not in IM_SERVICES and dep != "openldap" and "healthcheck" not in dep_svc:
                fail(f"{name} waits for {dep} to be healthy, but {dep} has no healthcheck")
    deps = {n: set((s.get("depends_on") or {}).keys()) for n, s in services.items()}
    expect = {"rest": {"mariadb", "redis", "openldap"}, "transfer": {"rest", "rabbitmq"},
              "connector": {"transfer"}, "connector-lb": {"connector"}}
    for n, d in expect.items():
        if not d <= deps.get(n, set()):
            fail(f"{n} must wait for {sorted(d)}, waits for {sorted(deps.get(n, set()))}")
    ok("depends_on: every dependency waits for service_healthy; rest -> transfer -> connector -> lb")

    # Mutual TLS on the internal links, on in compose: every im-* service presents the member
    # certificate that the one-shot pki service makes, from a volume it mounts read-only; the CA's
    # key stays in a volume only pki mounts.
    pki = services.get("pki", {})
    if (pki.get("entrypoint") or [None])[0] != "im-cluster-pki":
        fail(f"pki: entrypoint {pki.get('entrypoint')}, expected im-cluster-pki")
    for name in IM_SERVICES:
        env = env_of(services.get(name, {}))
        if env.get("IM_CLUSTER_TLS_ENABLED") != "true":
            fail(f"{name}: IM_CLUSTER_TLS_ENABLED is {env.get('IM_CLUSTER_TLS_ENABLED')!r}, expected 'true'")
        if "pki" not in (services.get(name, {}).get("depends_on") or {}):
            fail(f"{name} does not wait for pki")
        vols = [str(v) for v in services.get(name, {}).get("volumes") or []]
        if not any(v.startswith("cluster-pki:") and v.endswith(":ro") for v in vols):
            fail(f"{name}: the cluster-pki volume is not mounted read-only ({vols})")
        if any(v.startswith("cluster-pki-ca:") for v in vols):
            fail(f"{name} mounts the CA's key (cluster-pki-ca)")
    ok("links: mutual TLS on (pki makes the certificates; im-* mount them read-only; the CA key stays with pki)")

    # The im-* services and the openldap image bring their own HEALTHCHECK (in their Dockerfiles).
    for f, what in ((DOCKER / "Dockerfile", "im-healthcheck"), (DOCKER / "openldap/Dockerfile", "health")):
        if not re.search(r"^HEALTHCHECK .*" + re.escape(what), f.read_text(), re.M):
            fail(f"{f.relative_to(ROOT)} has no HEALTHCHECK running {what}")

    # Scalable connectors: no fixed host port; the balancer publishes one.
    conn = services.get("connector", {})
    if conn.get("ports"):
        fail(f"connector publishes host ports {conn['ports']}: `--scale connector=3` would collide")
    if conn.get("container_name") or services.get("transfer", {}).get("container_name"):
        fail("a scalable service has a container_name (only one replica could exist)")
    lb_ports = [str(p.get("published")) if isinstance(p, dict) else str(p)
                for p in services.get("connector-lb", {}).get("ports", [])]
    if not lb_ports:
        fail("connector-lb publishes no port")
    adv = env_of(conn).get("IM_CONNECTOR_CONNECTOR_ADVERTISED_ADDRESS", "")
    if not adv or adv.rsplit(":", 1)[-1] not in [p.split(":")[0] for p in lb_ports]:
        fail(f"connectors advertise {adv!r}, which is not the balancer's published port {lb_ports}")
    ok(f"connector has no host port; connector-lb publishes {lb_ports}; connectors advertise {adv}")

    # MariaDB keeps its data in a named volume.
    mounts = services.get("mariadb", {}).get("volumes", [])
    if not any((m.get("target") if isinstance(m, dict) else str(m).split(":")[1]) == "/var/lib/mysql"
               for m in mounts):
        fail("mariadb has no volume on /var/lib/mysql")
    if "mariadb-data" not in (cfg.get("volumes") or {}):
        fail("no named volume mariadb-data")
    ok("mariadb data on the named volume mariadb-data")

    # The im-* services: one image, configured only through IM_* variables (no config file).
    for name, prog in IM_SERVICES.items():
        svc = services.get(name, {})
        if svc.get("command") != [prog]:
            fail(f"{name}: command {svc.get('command')}, expected [{prog!r}] (configuration is by IM_* only)")
        bad = [k for k in env_of(svc) if not k.startswith("IM_")]
        if bad:
            fail(f"{name}: environment variables outside IM_*: {bad}")
    ok("im-* services: command is the bare binary; every variable is IM_*")

    # im-cli from the same image, only on demand (`docker compose run --rm cli ...`).
    cli = services.get("cli", {})
    if cli.get("image") != services.get("rest", {}).get("image"):
        fail(f"cli uses image {cli.get('image')!r}, not the im image {services.get('rest', {}).get('image')!r}")
    if "tools" not in (cli.get("profiles") or []):
        fail("cli is not in the 'tools' profile (`docker compose up` would start it)")
    if (cli.get("entrypoint") or [None])[0] != "im-cli":
        fail(f"cli entrypoint {cli.get('entrypoint')}, expected im-cli ...")
    ok("cli: im-cli from the im image, profile tools (docker compose run --rm cli ...)")

    # .env.example sets every variable the compose file uses, and nothing else.
    text = COMPOSE.read_text()
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    example = DOCKER / ".env.example"
    defined = set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)=", example.read_text(), re.M))
    if used - defined:
        fail(f".env.example lacks {sorted(used - defined)}")
    if defined - used:
        fail(f".env.example sets variables the compose file never uses: {sorted(defined - used)}")
    with_example = compose_config(example)
    lb = with_example["services"]["connector-lb"]["ports"][0]
    if str(lb.get("published") if isinstance(lb, dict) else lb).split(":")[0] != "9000":
        fail("with .env.example the balancer is not on 9000")
    ok(f".env.example covers the {len(used)} compose variables and parses with docker-compose")


# ---------------------------------------------------------------------------------------- haproxy
def check_haproxy():
    cfg = DOCKER / "haproxy.cfg"
    r = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"haproxy -c: {r.stdout}{r.stderr}")
    else:
        ok("haproxy -c accepts docker/haproxy.cfg")
    # The check must be able to fail: a broken copy is refused.
    with tempfile.NamedTemporaryFile("w", suffix=".cfg") as broken:
        broken.write(cfg.read_text().replace("balance leastconn", "balance leastconnz"))
        broken.flush()
        if subprocess.run(["haproxy", "-c", "-f", broken.name], capture_output=True).returncode == 0:
            fail("haproxy -c accepted a broken config: the check proves nothing")
    conn = env_of(compose_config()["services"]["connector"])
    text = cfg.read_text()
    want_server = f"connector:{conn['IM_CONNECTOR_CONNECTOR_PORT']}"
    want_check = f"check port {conn['IM_CONNECTOR_ADMIN_PORT']}"
    if want_server not in text or want_check not in text or "GET /readyz" not in text:
        fail(f"haproxy.cfg must send to {want_server} and check /readyz on the admin port ({want_check})")
    else:
        ok(f"haproxy balances {want_server}, health from /readyz ({want_check})")


# ------------------------------------------------------------------------------------- dockerfile
def dockerfile_steps(path):
    """(stage, instruction, arguments) of a Dockerfile, continuation lines joined."""
    steps, stage, buf = [], None, ""
    for line in path.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buf += line.rstrip("\\").strip() + " "
        if line.rstrip().endswith("\\"):
            continue
        instr, _, args = buf.strip().partition(" ")
        buf = ""
        if instr.upper() == "FROM":
            stage = args.split(" AS ")[-1].strip() if " AS " in args else args
        steps.append((stage, instr.upper(), args.strip()))
    return steps


def installed_closure(packages):
    """Every package the given ones pull in (Depends/PreDepends, no Recommends), by apt's view."""
    r = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                        "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"] + packages,
                       capture_output=True, text=True)
    names = set(packages)
    for line in r.stdout.splitlines():
        m = re.match(r"\s*(?:\|)?(?:Pre)?Depends: <?([^>\s:]+)", line)
        if m:
            names.add(m.group(1))
        elif line and not line.startswith(" "):
            names.add(line.strip().split(":")[0])
    return names


def check_dockerfile(bin_dir):
    steps = dockerfile_steps(DOCKER / "Dockerfile")
    runs = {}
    for stage, instr, args in steps:
        if instr == "RUN":
            runs.setdefault(stage, []).append(args)
    build_runs = " && ".join(runs.get("build", []))
    runtime_runs = " && ".join(runs.get("rootfs", []))
    # What CI runs: .ci/run -> scripts/test -> scripts/install-deps.sh and scripts/build.sh.
    ci = (ROOT / ".ci/run").read_text()
    test = (ROOT / "scripts/test").read_text()
    if "./scripts/test" not in ci:
        fail(".ci/run no longer calls ./scripts/test: update this check")
    for script in ("scripts/install-deps.sh", "scripts/build.sh"):
        if script not in test:
            fail(f"scripts/test (CI) no longer calls {script}: update this check")
    if not re.search(r"(^|\s)scripts/install-deps\.sh --build(\s|$)", build_runs):
        fail("the build stage does not run scripts/install-deps.sh --build")
    if not re.search(r"(^|\s)scripts/build\.sh(\s|$)", build_runs):
        fail("the build stage does not build with scripts/build.sh")
    if re.search(r"\b(cmake|ninja|make|g\+\+)\b", build_runs):
        fail("the build stage calls a compiler/build tool directly: use scripts/build.sh like CI")
    if not re.search(r"install-deps\.sh --runtime(\s|$)", runtime_runs):
        fail("the rootfs stage does not install with scripts/install-deps.sh --runtime")
    if re.search(r"\bapt-get install\b", build_runs + runtime_runs):
        fail("the im image installs packages outside scripts/install-deps.sh")
    froms = [a for _, i, a in steps if i == "FROM"]
    if froms != ["debian:bookworm AS build", "debian:bookworm-slim AS rootfs", "scratch AS runtime"]:
        fail(f"stages {froms}: expected a debian:bookworm build stage, a bookworm-slim rootfs stage and "
             "the runtime from scratch")
    # The runtime is one layer: the rootfs stage copied whole (what it deleted costs nothing).
    runtime_copies = [a for s, i, a in steps if s == "runtime" and i in ("COPY", "ADD", "RUN")]
    if runtime_copies != ["--from=rootfs / /"]:
        fail(f"the runtime stage must be exactly `COPY --from=rootfs / /` (one layer), has {runtime_copies}")
    users = [a for s, i, a in steps if i == "USER" and s == "runtime"]
    if not users or users[-1] in ("root", "0"):
        fail("the runtime stage does not switch to a non-root USER")
    if not any(i == "HEALTHCHECK" for s, i, _ in steps if s == "runtime"):
        fail("the runtime stage has no HEALTHCHECK")
    for _, instr, args in steps:  # every file the Dockerfiles copy from the context exists
        if instr == "COPY" and not args.startswith("--from"):
            for src in args.split()[:-1]:
                if not (ROOT / src).exists():
                    fail(f"COPY {src}: no such file in the repository")
    for _, instr, args in dockerfile_steps(DOCKER / "openldap/Dockerfile"):
        if instr == "COPY" and not args.startswith("--from"):
            for src in args.split()[:-1]:
                if not (ROOT / src).exists():
                    fail(f"openldap COPY {src}: no such file in the repository")
    copied = re.findall(r"build/bin/(im-[a-z]+)", build_runs)
    for prog in list(IM_SERVICES.values()) + ["im-cli"]:
        if prog not in copied:
            fail(f"{prog} is not copied into the image")
    ok(f"Dockerfile: build stage runs {runs.get('build', [])[:2]}; rootfs stage {runs.get('rootfs', [])[:1]}; "
       "runtime: that file system as one layer")

    # The runtime stage: its packages (plus what debian:bookworm-slim has: the Essential and
    # Required packages, and apt) must provide every shared library the binaries load.
    text = (ROOT / "scripts/install-deps.sh").read_text()
    runtime = re.search(r"RUNTIME_PKGS=\(([^)]*)\)", text).group(1).split()
    q = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Priority} ${Essential}\n"],
                       capture_output=True, text=True).stdout
    base = [l.split()[0] for l in q.splitlines() if " required" in l or l.endswith(" yes")]
    have = installed_closure(runtime + base + ["apt"])
    if "libapt-pkg6.0" not in have:  # apt's own library: the closure came out empty
        fail("apt-cache depends knows no dependencies (no package lists?): run apt-get update")
        return
    missing = {}
    # The image is built Release (scripts/build.sh's default); a sanitizer build of the test run
    # loads libasan and other libraries the image never would, so the comparison is meaningless.
    for prog in IM_SERVICES.values():
        binary = Path(bin_dir) / prog
        if binary.exists() and "libasan" in subprocess.run(["ldd", str(binary)], capture_output=True,
                                                            text=True).stdout:
            ok(f"library check skipped: {binary} is a sanitizer build (the image is built Release)")
            return
    for prog in list(IM_SERVICES.values()) + ["im-cli"]:
        binary = Path(bin_dir) / prog
        if not binary.exists():
            fail(f"{binary} is not built")
            continue
        for line in subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout.splitlines():
            m = re.match(r"\s*(\S+) => (/\S+)", line)
            if not m:
                continue
            path = os.path.realpath(m.group(2))
            owner = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True).stdout
            if not owner:  # /lib -> /usr/lib merged paths
                owner = subprocess.run(["dpkg", "-S", m.group(2)], capture_output=True, text=True).stdout
            pkg = owner.split(":")[0].strip() if owner else "?"
            if pkg not in have:
                missing.setdefault(pkg, set()).add(f"{prog}:{m.group(1)}")
    if missing:
        fail("libraries the binaries load that the runtime stage would not install: " +
             "; ".join(f"{p} ({', '.join(sorted(v))})" for p, v in sorted(missing.items())))
    else:
        ok(f"every shared library of the im-* binaries comes with RUNTIME_PKGS ({len(runtime)} packages) "
           "or the bookworm-slim base")


# -------------------------------------------------------------------------------------------- env
def print_config(prog_path, env):
    r = subprocess.run([str(prog_path), "--print-config"], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        return None, r
    conf = {}
    for line in r.stdout.splitlines():
        k, sep, v = line.partition(" = ")
        if sep:
            conf[k] = v
    return conf, r


def normalize(value):
    m = re.fullmatch(r"(\d+)(ms|s|m|min|h|d)?", value.strip())
    if m and m.group(2):
        mult = {"ms": 1, "s": 1000, "m": 60000, "min": 60000, "h": 3600000, "d": 86400000}[m.group(2)]
        return f"{int(m.group(1)) * mult}ms"
    return value.strip()


def env_problems(prog, prog_path, env):
    """Names and values in `env` that `prog` would not read as given. Empty when all is well."""
    conf, r = print_config(prog_path, clean_env(env))
    if conf is None:
        return [f"{prog} --print-config exit {r.returncode}: {r.stderr.strip()}"]
    names = {}
    for key in conf:
        suffix = key.replace(".", "_").upper()
        names[PREFIX[prog] + suffix] = key
        names.setdefault("IM_" + suffix, key)
    problems = []
    for var, value in sorted(env.items()):
        key = names.get(var)
        if key is None:
            problems.append(f"{var} is not a configuration key of {prog} (ignored by it)")
            continue
        own = PREFIX[prog] + key.replace(".", "_").upper()
        if var != own and own in env:
            problems.append(f"{var} is shadowed by {own}")
            continue
        shown = conf[key]
        if shown == "********":
            continue  # a secret: the binary masks it
        if normalize(shown) != normalize(value) and shown != ",".join(x.strip() for x in value.split(",")):
            problems.append(f"{var}={value!r} but {prog} uses {key} = {shown!r}")
    return problems


def check_env(bin_dir):
    services = compose_config()["services"]
    for name, prog in IM_SERVICES.items():
        env = env_of(services[name])
        problems = env_problems(prog, Path(bin_dir) / prog, env)
        for p in problems:
            fail(f"{name}: {p}")
        if not problems:
            ok(f"{name}: {prog} reads all {len(env)} IM_* variables with the compose values")
        # The check must be able to fail: a misspelt variable name is caught...
        var = sorted(k for k in env if k.startswith(PREFIX[prog]))[0]
        typo = dict(env)
        typo[var.replace("_PORT", "_PROT") if "_PORT" in var else var + "X"] = typo.pop(var)
        if not any("not a configuration key" in p for p in env_problems(prog, Path(bin_dir) / prog, typo)):
            fail(f"{name}: a misspelt {var} went unnoticed")
        # ...and a bad value makes the binary itself exit 2 naming the key and the variable.
        var = sorted(k for k in env if k.startswith(PREFIX[prog]) and k.endswith("_PORT"))[0]
        bad = dict(env)
        bad[var] = "not-a-port"
        _, r = print_config(Path(bin_dir) / prog, clean_env(bad))
        if r.returncode != 2 or var not in r.stderr:
            fail(f"{name}: {var} with a bad value: exit {r.returncode} (expected 2 naming {var}): {r.stderr}")
    # What the binaries do with an unknown IM_* variable themselves (documented, not enforced:
    # shared variables like IM_MYSQL_PORT are given to every process, so they cannot refuse one).
    r = subprocess.run([str(Path(bin_dir) / "im-rest"), "--print-config"],
                       env=clean_env({"IM_REST_HTTP_PROT": "1"}), capture_output=True, text=True)
    print(f"note: im-rest with an unknown IM_REST_HTTP_PROT exits {r.returncode} "
          f"({'ignored silently' if r.returncode == 0 else 'rejected'}); this check is what catches it")


# -------------------------------------------------------------------------------------------- run
_taken = set()


def free_port():
    """A free port below the kernel's ephemeral range (as scripts/lib.sh's im_free_port)."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        if port in _taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        _taken.add(port)
        return port
    raise RuntimeError("no free port found")


def need(var):
    v = os.environ.get(var)
    if not v:
        fail(f"${var} is not set: run this through ./scripts/test (it starts the servers)")
        finish()
    return v


def http(method, url, body=None, timeout=5):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Proc:
    def __init__(self, name, command, env, log_dir):
        self.name = name
        self.log = Path(log_dir) / f"{name}.log"
        with open(self.log, "wb") as out:
            # The image's entry point and the compose command, exactly: im-entrypoint im-rest
            self.p = subprocess.Popen([str(DOCKER / "im-entrypoint")] + command, env=env, stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True)

    def healthy(self, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.p.poll() is not None:
                return False
            if subprocess.run([str(DOCKER / "im-healthcheck"), str(self.p.pid)], capture_output=True).returncode == 0:
                return True
            time.sleep(0.2)
        return False

    def stop(self, seconds=30):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(seconds)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            return None

    def tail(self):
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-25:])


def check_run(bin_dir):
    run_dir = need("IM_RUN_DIR")
    services = compose_config()["services"]
    tag = f"{os.getpid()}_{int(time.time())}"
    db = f"im_compose_{tag}"
    mysql = ["mariadb", "--no-defaults", "--protocol=TCP", "-h127.0.0.1", "-P" + need("IM_MYSQL_PORT"),
             "-u" + os.environ.get("IM_MYSQL_USER", "im")]
    mysql_env = clean_env({"MYSQL_PWD": os.environ.get("IM_MYSQL_PASSWORD", "im_pass")})
    subprocess.run(mysql + ["-e", f"CREATE DATABASE {db} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"],
                   env=mysql_env, check=True)
    ldap_base = os.environ.get("IM_LDAP_BASE", "dc=im,dc=test")
    # LOCAL_MAP: compose value -> local value, for the variables the compose file sets. Nothing
    # else changes, except the Redis key prefix (added: isolation from the other tests' processes).
    servers = {
        "IM_REDIS_HOST": "127.0.0.1", "IM_REDIS_PORT": need("IM_REDIS_PORT"),
        "IM_MYSQL_HOST": "127.0.0.1", "IM_MYSQL_PORT": need("IM_MYSQL_PORT"), "IM_MYSQL_DB": db,
        "IM_MYSQL_USER": os.environ.get("IM_MYSQL_USER", "im"),
        "IM_MYSQL_PASSWORD": os.environ.get("IM_MYSQL_PASSWORD", "im_pass"),
        "IM_RABBITMQ_HOST": "127.0.0.1", "IM_RABBITMQ_PORT": need("IM_RABBITMQ_PORT"),
        "IM_RABBITMQ_USER": os.environ.get("IM_RABBITMQ_USER", "im"),
        "IM_RABBITMQ_PASSWORD": os.environ.get("IM_RABBITMQ_PASSWORD", "im_pass"),
        "IM_REST_AUTH_LDAP_URL": f"ldap://127.0.0.1:{need('IM_LDAP_PORT')}",
        "IM_REST_AUTH_LDAP_SEARCH_BASE": f"ou=people,{ldap_base}",
        "IM_REST_AUTH_LDAP_SERVICE_DN": f"cn=reader,ou=services,{ldap_base}",
        "IM_REST_AUTH_LDAP_SERVICE_PASSWORD": "reader_pass",
    }
    added = {"IM_REDIS_KEY_PREFIX": f"imcompose{tag}:"}
    # The link certificates, made by the image's own tool, as the compose file's pki service does.
    pki_dir = Path(run_dir) / f"compose-pki-{tag}"
    r = subprocess.run(["sh", str(DOCKER / "im-cluster-pki"), str(pki_dir / "pki"), str(pki_dir / "ca")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"docker/im-cluster-pki failed: {r.stderr.strip()}")
        finish()
    servers.update({"IM_CLUSTER_TLS_CA_FILE": str(pki_dir / "pki/ca.pem"),
                    "IM_CLUSTER_TLS_CERT_FILE": str(pki_dir / "pki/member.pem"),
                    "IM_CLUSTER_TLS_KEY_FILE": str(pki_dir / "pki/member.key")})
    rest_port = free_port()
    plan = [
        ("rest", "rest", {"IM_REST_HTTP_PORT": str(rest_port), "IM_REST_ADMIN_PORT": str(free_port())}),
        ("transfer", "transfer", {"IM_TRANSFER_TRANSFER_PORT": str(free_port()),
                                  "IM_TRANSFER_ADMIN_PORT": str(free_port())}),
    ]
    for i in (1, 2):  # two replicas of the same service definition, as `--scale connector=2`
        plan.append((f"connector-{i}", "connector", {"IM_CONNECTOR_CONNECTOR_PORT": str(free_port()),
                                                     "IM_CONNECTOR_ADMIN_PORT": str(free_port())}))
    log_dir = Path(run_dir) / f"compose-check-{tag}"
    log_dir.mkdir(parents=True)
    procs = []
    try:
        for name, svc, ports in plan:
            compose_env = env_of(services[svc])
            env = dict(compose_env)
            changed = []
            for var, local in list(servers.items()) + list(ports.items()):
                if var in env and env[var] != local:
                    changed.append(f"{var}: {env[var]} -> {local}")
                    env[var] = local
            for var in ports:
                if var not in compose_env:
                    fail(f"{name}: the compose file does not set {var} (the local port map assumes it)")
            env.update(added)
            print(f"{name}: {services[svc]['command']} with {len(compose_env)} compose variables; "
                  f"local changes: {'; '.join(changed)}; added: {added}", flush=True)
            path = f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"  # `im-rest` resolves as in the image
            p = Proc(name, services[svc]["command"], clean_env({**env, "PATH": path}), log_dir)
            procs.append(p)
            if not p.healthy(60):
                fail(f"{name} did not become healthy (im-healthcheck) within 60 s; exit {p.p.poll()}; log:\n{p.tail()}")
                return
            ok(f"{name} is healthy (docker/im-healthcheck {p.p.pid})")

        transfer_log = procs[1].log.read_text(errors="replace")
        m = re.search(r"im-entrypoint: im-transfer advertises (\S+)", transfer_log)
        if not m:
            fail("im-entrypoint did not fill in the transfer's advertised address")
        else:
            ok(f"im-entrypoint: the transfer advertises {m.group(1)} (its IP; the connectors linked to it)")

        # Both connectors registered with the advertised address of the compose file.
        adv = env_of(services["connector"])["IM_CONNECTOR_CONNECTOR_ADVERTISED_ADDRESS"]
        redis = ["redis-cli", "-h", "127.0.0.1", "-p", need("IM_REDIS_PORT")]
        prefix = added["IM_REDIS_KEY_PREFIX"]
        deadline, addrs = time.time() + 10, []
        while time.time() < deadline:
            keys = subprocess.run(redis + ["--scan", "--pattern", prefix + "conn:*"],
                                  capture_output=True, text=True).stdout.split()
            addrs = sorted(subprocess.run(redis + ["HGET", k, "address"], capture_output=True, text=True)
                           .stdout.strip() for k in keys)
            if len(addrs) == 2:
                break
            time.sleep(0.2)
        if addrs != [adv, adv]:
            fail(f"connectors registered in Redis with addresses {addrs}, expected two times {adv}")
        else:
            ok(f"both connectors registered in Redis, advertising {adv}")

        # LDAP login through the compose settings; the answer names the balancer's address once.
        st, body = http("POST", f"http://127.0.0.1:{rest_port}/v1/sessions",
                        {"username": "alice", "password": "alice_pass", "device_id": "compose-check"})
        if st != 201:
            fail(f"LDAP login as alice: HTTP {st} {body}")
        else:
            connectors = json.loads(body).get("connectors")
            if connectors != [adv]:
                fail(f"login answer lists connectors {connectors}, expected [{adv!r}]")
            else:
                ok(f"LDAP login as alice (auth mode from the compose file); login answer connectors = {connectors}")
        st, _ = http("POST", f"http://127.0.0.1:{rest_port}/v1/sessions",
                     {"username": "alice", "password": "wrong", "device_id": "compose-check"})
        if st != 401:
            fail(f"LDAP login with a wrong password: HTTP {st}, expected 401")
    finally:
        for p in reversed(procs):  # as `docker compose down`: SIGTERM, graceful drain
            rc = p.stop()
            if rc != 0:
                fail(f"{p.name}: exit {rc} after SIGTERM (expected 0); log:\n{p.tail()}")
        subprocess.run(mysql + ["-e", f"DROP DATABASE IF EXISTS {db}"], env=mysql_env)
        if not failures:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            print(f"logs in {log_dir}")
    if not failures:
        ok("every im-* process stopped with exit 0 on SIGTERM")


# ------------------------------------------------------------------------------------------- ldap
def check_ldap():
    """The openldap service as the compose file configures it (with .env.example's values)."""
    services = compose_config(DOCKER / ".env.example")["services"]
    ldap_env = env_of(services["openldap"])
    entry = str(DOCKER / "openldap/slapd-entrypoint")
    known = set(re.findall(r'\$\{(LDAP_[A-Z_]+):?=', Path(entry).read_text()))
    if set(ldap_env) - known:
        fail(f"openldap: variables slapd-entrypoint does not read: {sorted(set(ldap_env) - known)}")
    base = ldap_env["LDAP_BASE"]
    rest = env_of(services["rest"])
    for var, want in (("IM_REST_AUTH_LDAP_URL", "ldap://openldap:389"),
                      ("IM_REST_AUTH_LDAP_SEARCH_BASE", f"ou=people,{base}"),
                      ("IM_REST_AUTH_LDAP_SERVICE_DN", f"cn=reader,ou=services,{base}"),
                      ("IM_REST_AUTH_LDAP_SERVICE_PASSWORD", ldap_env["LDAP_READER_PASSWORD"])):
        if rest.get(var) != want:
            fail(f"rest: {var}={rest.get(var)!r} does not match the openldap service ({want!r})")
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        # Local only: where slapd listens and keeps its files, where the templates are, no user switch.
        env = clean_env({**ldap_env, "LDAP_DIR": d, "LDAP_URLS": f"ldap://127.0.0.1:{port}/",
                         "LDAP_TEMPLATES": str(ROOT / "scripts/services"),
                         "LDAP_HEALTH_URL": f"ldap://127.0.0.1:{port}/", "LDAP_USER": ""})
        with open(Path(d) / "out.log", "wb") as out:
            p = subprocess.Popen([entry, "run"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        try:
            deadline = time.time() + 30
            while subprocess.run([entry, "health"], env=env, capture_output=True).returncode != 0:
                if p.poll() is not None or time.time() > deadline:
                    fail(f"slapd-entrypoint: not healthy (exit {p.poll()}): {(Path(d) / 'out.log').read_text()[-2000:]}")
                    return
                time.sleep(0.1)
            ok("openldap entry point with the compose environment: seeded and healthy (alice binds)")
            whoami = ["ldapwhoami", "-x", "-H", f"ldap://127.0.0.1:{port}/"]
            for dn, pw, want in ((f"cn=reader,ou=services,{base}", ldap_env["LDAP_READER_PASSWORD"], 0),
                                 (f"cn=admin,{base}", ldap_env["LDAP_ADMIN_PASSWORD"], 0),
                                 (f"cn=reader,ou=services,{base}", "reader_pass", 49),
                                 (f"uid=bob,ou=people,{base}", "bob_pass", 0),
                                 (f"uid=bob,ou=people,{base}", "alice_pass", 49)):
                rc = subprocess.run(whoami + ["-D", dn, "-w", pw], env=clean_env({"LDAPNOINIT": "1"}),
                                    capture_output=True).returncode
                if rc != want:
                    fail(f"bind as {dn} with {pw}: exit {rc}, expected {want}")
            bad = dict(env, LDAP_HEALTH_URL=f"ldap://127.0.0.1:{free_port()}/")
            if subprocess.run([entry, "health"], env=bad, capture_output=True).returncode != 1:
                fail("slapd-entrypoint health does not exit 1 when the directory does not answer")
            ok("reader and admin bind with the compose passwords, the demo people with theirs; wrong passwords are refused; rest's LDAP settings match")
        finally:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# ------------------------------------------------------------------------------------------ files
def check_files():
    """Issue 17, item 2: uploaded files live as blobs in im-rest's files.dir and as rows in MariaDB.
    Without a volume on files.dir the blobs vanish when the container is re-created (an image
    upgrade, `docker compose up` after a settings change) while their rows stay."""
    cfg = compose_config()
    services = cfg["services"]
    named = set((cfg.get("volumes") or {}).keys())
    workdir = "/"
    for stage, instr, args in dockerfile_steps(DOCKER / "Dockerfile"):
        if stage == "runtime" and instr == "WORKDIR":
            workdir = args
    rest_like = [n for n, svc in services.items() if svc.get("command") == ["im-rest"]]
    if not rest_like:
        fail("no service runs im-rest")
    for name in rest_like:
        env = env_of(services[name])
        files_dir = env.get("IM_REST_FILES_DIR", "data/files")  # im-rest's default, relative
        if not files_dir.startswith("/"):
            files_dir = str(Path(workdir) / files_dir)
        mounts = []
        for m in services[name].get("volumes") or []:
            if isinstance(m, dict):
                mounts.append((m.get("source"), m.get("target"), m.get("type", "volume")))
            else:
                parts = str(m).split(":")
                mounts.append((parts[0], parts[1] if len(parts) > 1 else parts[0], "volume"))
        covering = [(src, tgt) for src, tgt, kind in mounts
                    if kind == "volume" and src in named and (files_dir == tgt or files_dir.startswith(tgt.rstrip("/") + "/"))]
        if not covering:
            fail(f"{name}: files.dir {files_dir} is on no named volume (mounts: {mounts}): uploaded files "
                 "vanish when the container is re-created while their rows stay in MariaDB")
        else:
            ok(f"{name}: files.dir {files_dir} is on the named volume {covering[0][0]} ({covering[0][1]})")
    # The mount point exists in the image, owned by the process's user (a new volume copies it).
    text = (DOCKER / "Dockerfile").read_text()
    if not re.search(r"install -d -o im -g im [^\n]*/var/lib/im/files", text):
        fail("the Dockerfile does not create /var/lib/im/files owned by im (the volume would be root's)")


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    what, args = sys.argv[1], sys.argv[2:]
    checks = {"config": check_config, "haproxy": check_haproxy, "dockerfile": check_dockerfile,
              "env": check_env, "run": check_run, "ldap": check_ldap, "files": check_files}
    if what not in checks:
        print(__doc__)
        sys.exit(2)
    checks[what](*args)
    finish()


if __name__ == "__main__":
    main()
