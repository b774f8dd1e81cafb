"""Real servers on 127.0.0.1 that tests start, stop and start again."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(proc: subprocess.Popen, answers, log_path: Path, what: str, timeout_s: float) -> None:
    """Poll ``answers()`` (True once the server serves; OSError while it cannot) until it does; fail the
    test with the tail of ``log_path`` if ``proc`` exits or ``timeout_s`` passes first."""
    deadline = time.time() + timeout_s
    while True:
        try:
            if answers():
                return
        except OSError:
            pass
        if time.time() > deadline or proc.poll() is not None:
            _kill_group(proc)
            pytest.fail(f"{what} did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.5)


def _kill_group(proc: subprocess.Popen | None) -> None:
    """SIGKILL a server started in its own session (``start_new_session``), with everything in its group."""
    if proc is None:
        return
    try:
        os.killpg(proc.pid, 9)
    except ProcessLookupError:
        pass
    proc.wait()


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 (sqlite backend, local artifacts under ``root``) that a
    test can stop and start again on the same port and store, as an operator restarting it would."""

    def __init__(self, root: Path, port: int | None = None):
        self.root, self.port = root, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120) -> "MlflowServer":
        with open(self.root / "server.log", "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.root}/mlflow.db",
                 "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1",
                 "--port", str(self.port), "--workers", "1"],
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        _wait_until_up(self.proc, lambda: urllib.request.urlopen(self.url + "/health", timeout=2).status == 200,
                       self.root / "server.log", "mlflow server", timeout_s)
        return self

    def stop(self) -> None:
        _kill_group(self.proc)
        self.proc = None


class S3Server:
    """A real S3-compatible server on 127.0.0.1 (``moto`` in server mode, in its own process) with one
    bucket; ``env`` holds what pyarrow on the driver and on every worker reads to reach it."""

    def __init__(self, root: Path, bucket: str = "semtune-test"):
        self.root, self.bucket, self.port = root, bucket, free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": self.endpoint}
        self.proc: subprocess.Popen | None = None

    def uri(self, prefix: str) -> str:
        """``s3://bucket/prefix`` with the endpoint in the URI, as a study names a server of its own."""
        return f"s3://{self.bucket}/{prefix}?endpoint_override=127.0.0.1:{self.port}&scheme=http"

    def start(self, timeout_s: float = 60) -> "S3Server":
        pytest.importorskip("moto.server", reason="moto[server] is in the test extra")
        with open(self.root / "moto.log", "a") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                         stdout=log, stderr=log, start_new_session=True)
        create_bucket = urllib.request.Request(f"{self.endpoint}/{self.bucket}", method="PUT")  # S3's CreateBucket
        _wait_until_up(self.proc, lambda: urllib.request.urlopen(create_bucket, timeout=2).status == 200,
                       self.root / "moto.log", "moto server", timeout_s)
        return self

    def keys(self, prefix: str = "") -> list[str]:
        """Every object's key under ``prefix``, read back through pyarrow (as Ray reads them)."""
        import pyarrow.fs

        fs = pyarrow.fs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1",
                                     endpoint_override=f"127.0.0.1:{self.port}", scheme="http")
        selector = pyarrow.fs.FileSelector(f"{self.bucket}/{prefix}", recursive=True, allow_not_found=True)
        infos = fs.get_file_info(selector)
        return sorted(i.path.removeprefix(f"{self.bucket}/") for i in infos if i.type == pyarrow.fs.FileType.File)

    def stop(self) -> None:
        _kill_group(self.proc)
        self.proc = None


class PostgresServer:
    """A real PostgreSQL on 127.0.0.1 (Debian's ``postgresql`` package), password authentication; run as
    user ``postgres`` when the tests run as root (PostgreSQL refuses root). ``env`` gives its password
    as libpq reads it (``PGPASSWORD``), so the URL carries none."""

    def __init__(self):
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not found:
            pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        self.bin, self.port = found[-1].parent, free_port()
        self.password = "pg-" + os.urandom(6).hex()
        self.url = f"postgresql://semtune@127.0.0.1:{self.port}/postgres"
        self.env = {"PGPASSWORD": self.password}
        self.root = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))  # short (its socket) and open to its owner

    def _run(self, *args: str) -> None:
        as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*as_owner, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])

    def start(self) -> "PostgresServer":
        (self.root / "password").write_text(self.password)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.root / "password", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.root / "db"), "-U", "semtune", "--auth=scram-sha-256",
                  f"--pwfile={self.root / 'password'}")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.root / "db"), "-l", str(self.root / "server.log"), "-w",
                  "-o", f"-h 127.0.0.1 -p {self.port} -k {self.root}", "start")
        return self

    def stop(self) -> None:
        if (self.root / "db" / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.root / "db"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


class RayNodes:
    """A real Ray cluster of ``ray start`` processes on 127.0.0.1: a head (GCS, dashboard and job
    server) and ``workers`` more nodes, with Ray's token authentication on, as ``docker/cluster.yaml``
    starts them. Each node runs ``ray start --block`` in its own process group, so :meth:`stop` ends
    exactly this cluster (``ray stop`` would end every Ray of the machine).

    Each node has its own short temp dir (Unix socket paths are short): nodes that share one delete
    each other's job working dirs when they clean up (seen: the driver's cwd vanished mid-study)."""

    def __init__(self, root: Path, workers: int = 1, cpus_per_node: int = 1, head_env: dict | None = None,
                 head_cpus: int | None = None):
        import secrets

        self.root, self.workers, self.cpus = root, workers, cpus_per_node
        self.head_cpus = cpus_per_node if head_cpus is None else head_cpus
        self.port, self.dashboard_port = free_port(), free_port()
        self.address, self.dashboard = f"127.0.0.1:{self.port}", f"http://127.0.0.1:{self.dashboard_port}"
        bin_dir = str(Path(sys.executable).parent)  # `ray`, `semtune` and the entrypoint's python
        base = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
        # The clients' environment: `ray job …` and ray.init() send this token.
        self.env = {**base, "PATH": f"{bin_dir}{os.pathsep}{base.get('PATH', '')}",
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
        self.head_env = {**self.env, **(head_env or {})}
        self.temp_dirs = [tempfile.mkdtemp(prefix="ray", dir="/tmp") for _ in range(workers + 1)]
        self.procs: list[subprocess.Popen] = []

    def start(self, timeout_s: float = 180) -> "RayNodes":
        common = ["--block", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
        self._start_node("head", ["--head", "--port", str(self.port), "--dashboard-host", "127.0.0.1",
                                  "--dashboard-port", str(self.dashboard_port), "--num-cpus", str(self.head_cpus),
                                  *common], self.head_env, timeout_s)
        for i in range(self.workers):
            self._start_node(f"worker{i}", ["--address", self.address, "--num-cpus", str(self.cpus), *common],
                             self.env, timeout_s)
        return self

    def node_temp_dir(self, node: dict) -> str | None:
        """Which of this cluster's nodes a ``ray.nodes()`` entry is (all share 127.0.0.1): by its temp dir."""
        return next((d for d in self.temp_dirs if node.get("RayletSocketName", "").startswith(d + "/")), None)

    def kill(self, temp_dir: str) -> None:
        """Kill one node, every process of it at once (no graceful stop), as a lost machine: its ``ray start``,
        raylet and the workers the raylet started, which are not all in its process group (a worker left
        alive would finish its trial and report it to the driver directly, node or not)."""
        _kill_tree(self.procs[self.temp_dirs.index(temp_dir)])

    def _start_node(self, name: str, args: list[str], env: dict, timeout_s: float) -> None:
        log_path = self.root / f"{name}.log"
        temp_dir = self.temp_dirs[len(self.procs)]
        with open(log_path, "w") as log:
            proc = subprocess.Popen(["ray", "start", *args, "--temp-dir", temp_dir], env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        deadline = time.time() + timeout_s
        while "Ray runtime started" not in log_path.read_text():
            if proc.poll() is not None or time.time() > deadline:
                self.stop()
                pytest.fail(f"ray start ({name}) failed: {log_path.read_text()[-3000:]}")
            time.sleep(0.5)

    def ray(self, *args: str, timeout_s: float = 900) -> subprocess.CompletedProcess:
        """``ray <args>`` as a user runs it against this cluster (jobs go to the dashboard's job server)."""
        if args[0] == "job":
            args = (*args[:2], "--address", self.dashboard, *args[2:])
        return subprocess.run(["ray", *args], env=self.env, capture_output=True, text=True, timeout=timeout_s)

    def stop(self) -> None:
        for proc in reversed(self.procs):  # workers first, then the head
            _kill_tree(proc)
        self.procs = []
        for d in self.temp_dirs:
            shutil.rmtree(d, ignore_errors=True)


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``, its process group, and every process descended from it, at once."""
    if proc.poll() is not None:  # killed before (a lost node), or it died: its pid may be another's now
        return
    table = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout.split()
    children: dict[int, list[int]] = {}
    for pid, ppid in zip(map(int, table[::2]), map(int, table[1::2])):
        children.setdefault(ppid, []).append(pid)
    tree, todo = [], [proc.pid]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    for pid in tree:  # the descendants first: after the group's leader is reaped its pid may be reused
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    _kill_group(proc)


class SshServer:
    """A real OpenSSH server on 127.0.0.1 standing in for a cluster machine that Ray's launcher reaches
    over SSH (the ``local`` provider): key authentication for this user, and a login shell whose
    ``HOME`` is ``root/home`` and whose PATH starts with this Python's ``bin`` (semtune and Ray
    installed, as on a node of the image). The launcher always dials port 22, so ``bin/ssh`` is a
    client shim that adds this server's port: put :attr:`bin_dir` first on the launcher's PATH."""

    SSHD = Path("/usr/sbin/sshd")

    def __init__(self, root: Path):
        import getpass

        self.root, self.port, self.user = root, free_port(), getpass.getuser()
        self.home, self.bin_dir = root / "home", root / "bin"
        self.key = root / "id_ed25519"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30) -> "SshServer":
        for missing in (self.SSHD, Path("/usr/bin/ssh"), Path("/usr/bin/rsync")):
            if not missing.exists():
                pytest.skip(f"{missing} is absent (.ci/run installs Debian's openssh-server and rsync)")
        for key in (self.root / "host_key", self.key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (self.root / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        self.home.mkdir()
        profile = f'export PATH="{Path(sys.executable).parent}:$PATH"\n'
        for name in (".bashrc", ".profile"):
            (self.home / name).write_text(profile)
        self.bin_dir.mkdir()
        shim = self.bin_dir / "ssh"
        shim.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -p {self.port} "$@"\n')
        shim.chmod(0o755)
        config = self.root / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.root / 'host_key'}",
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}", "PermitRootLogin prohibit-password",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
            f"PidFile {self.root / 'sshd.pid'}", f"SetEnv HOME={self.home}", ""]))
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
        self.proc = subprocess.Popen([str(self.SSHD), "-D", "-f", str(config), "-E", str(self.root / "sshd.log")],
                                     start_new_session=True)
        def accepts() -> bool:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True

        _wait_until_up(self.proc, accepts, self.root / "sshd.log", "sshd", timeout_s)
        return self

    def stop(self) -> None:
        _kill_group(self.proc)
        self.proc = None
