"""Two clients behind two NATs and a relay on a "public" segment, in network namespaces.

The topology is built and removed by the test itself (needs root or CAP_NET_ADMIN +
CAP_SYS_ADMIN, ``ip`` from iproute2 and ``nft`` from nftables)::

        a 10.1.0.2                                          b 10.2.0.2
           | eth0                                              | eth0
           | lan 10.1.0.1                                      | lan 10.2.0.1
        nat1  (masquerade, stateful)          nat2  (masquerade, stateful)
           | wan 198.51.100.11                                 | wan 198.51.100.12
           +------------- br0 in pub 198.51.100.1 -------------+
                              (relay_ip)

* ``pub``: the public segment. A bridge ``br0`` holds the public address
  (:attr:`NatTopology.relay_ip`); the NAT routers' public legs plug into it.
* ``nat1``/``nat2``: routers with ``ip_forward=1``; nft masquerades what leaves by the
  public leg (``wan``). Only ``ct state established,related`` is forwarded from ``wan``
  into the LAN, and new inbound connections to the router itself are dropped too (ICMP
  excepted): nothing behind or on a NAT can be reached from outside unless it connected
  out first. The routers have no default route: a packet for another private network
  gets an ICMP "network unreachable" at once.
* ``a``/``b``: the clients, default route via their NAT.

Usage::

    with NatTopology(tmp_path) as topo:
        relay = topo.popen(topo.ns_pub, [sys.executable, "-m", "pyim", "relay", ...],
                           name="relay", env={"PYTHONPATH": "src"})
        topo.wait_for_output(relay, "listening", timeout=5)
        alice = topo.popen(topo.ns_a, [...client..., topo.relay_ip], name="alice")
        ...
        print(topo.report())  # logs of every process + addresses/routes/nft counters

Namespaces are named ``pyim<4 hex>-<role>`` (unique per instance, checked against the
existing ones), so a topology left behind by a killed run never collides with a new one;
:func:`remove_stale` (called on build) deletes those whose owner process is gone.

Every process started with :meth:`NatTopology.popen` runs in a session of its own and
is stopped by its PID at teardown (SIGTERM, then SIGKILL to its process group); it also
gets SIGTERM if the thread that started it dies (``setpriv --pdeathsig``), so start them
from the main thread.

(PYTEST_DONT_REWRITE: no pytest and no asserts here.)
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

PRIVILEGE_MESSAGE = (
    "network namespaces unavailable: needs root/CAP_NET_ADMIN and iproute2+nftables: "
    "apt-get install iproute2 nftables"
)

PUBLIC_NET = "198.51.100.0/24"  # TEST-NET-2, only ever inside the namespaces
RELAY_IP = "198.51.100.1"
NAT1_PUBLIC_IP = "198.51.100.11"
NAT2_PUBLIC_IP = "198.51.100.12"
NAT1_LAN_IP = "10.1.0.1"
NAT2_LAN_IP = "10.2.0.1"
A_IP = "10.1.0.2"
B_IP = "10.2.0.2"
LAN_PREFIX = 24
PUBLIC_PREFIX = 24

# Interface names inside the namespaces (veths are created directly in their namespace,
# so these never meet each other nor the host's names).
WAN_IF = "wan"  # NAT router's public leg
LAN_IF = "lan"  # NAT router's private leg
CLIENT_IF = "eth0"  # client's only leg
BRIDGE_IF = "br0"  # public segment, in pub

NAME_PATTERN = re.compile(r"^pyim[0-9a-f]{4}-(pub|nat1|nat2|a|b|probe)$")
OWNER_DIR = Path("/run/pyim-netns")  # <prefix> -> "<pid> <start time>" of the owner

# Where Debian puts ip/nft: not on a normal user's PATH.
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_CMD_TIMEOUT = 10.0


class NetnsError(RuntimeError):
    """A command that builds or inspects the topology failed."""


def _which(name: str) -> str | None:
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(_SBIN_DIRS)
    return shutil.which(name, path=path)


def binary(name: str) -> str:
    found = _which(name)
    if found is None:
        raise NetnsError(f"{name} not found; {PRIVILEGE_MESSAGE}")
    return found


def _exec(
    argv: Sequence[str], *, input: str | None = None, timeout: float = _CMD_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run a setup command; NetnsError with its output if it fails."""
    try:
        done = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"{' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        raise NetnsError(
            f"{' '.join(argv)} exited {done.returncode}: {(done.stderr or done.stdout).strip()}"
        )
    return done


def list_namespaces() -> list[str]:
    """Names of the named network namespaces (``ip netns list``)."""
    done = _exec([binary("ip"), "netns", "list"])
    # Lines look like "name" or "name (id: 3)".
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _delete_namespace(name: str) -> None:
    ip = _which("ip")
    if ip is None:
        return
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(
            [ip, "netns", "delete", name],
            capture_output=True,
            timeout=_CMD_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )


def _process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks): guards against PID reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _owner_alive(marker: Path) -> bool:
    try:
        pid_text, start = marker.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return False
    return _process_start_time(pid) == start


def _write_owner(prefix: str) -> None:
    start = _process_start_time(os.getpid())
    with contextlib.suppress(OSError):
        OWNER_DIR.mkdir(parents=True, exist_ok=True)
        (OWNER_DIR / prefix).write_text(f"{os.getpid()} {start}\n")


def _remove_owner(prefix: str) -> None:
    with contextlib.suppress(OSError):
        (OWNER_DIR / prefix).unlink(missing_ok=True)


def remove_stale() -> list[str]:
    """Delete the ``pyim<hex>-*`` namespaces whose owner (recorded in
    ``/run/pyim-netns/<prefix>``) is no longer running, e.g. left by a run killed with
    SIGKILL. Namespaces without an owner record are left alone (another tool's, or a
    topology being built right now). Returns the names deleted."""
    deleted: list[str] = []
    try:
        markers = list(OWNER_DIR.iterdir())
    except OSError:
        return deleted
    try:
        existing = list_namespaces()
    except NetnsError:
        return deleted
    for marker in markers:
        if not re.fullmatch(r"pyim[0-9a-f]{4}", marker.name) or _owner_alive(marker):
            continue
        for name in existing:
            if name.startswith(marker.name + "-") and NAME_PATTERN.match(name):
                _delete_namespace(name)
                deleted.append(name)
        with contextlib.suppress(OSError):
            marker.unlink()
    return deleted


def check_privileges() -> str | None:
    """None if this process can build the topology, else a message saying what is missing
    (tests fail with it; they never skip). Builds and deletes a probe namespace with a
    bridge, a veth pair and an nft table."""
    missing = [name for name in ("ip", "nft") if _which(name) is None]
    if missing:
        return f"{PRIVILEGE_MESSAGE} (not found: {', '.join(missing)})"
    ip = binary("ip")
    nft = binary("nft")
    prefix = f"pyim{secrets.token_hex(2)}"
    probe = f"{prefix}-probe"
    _write_owner(prefix)  # so that remove_stale() finds it if this process gets killed
    try:
        _exec([ip, "netns", "add", probe])
        _exec([ip, "-n", probe, "link", "add", BRIDGE_IF, "type", "bridge"])
        _exec([ip, "-n", probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1"])
        _exec(
            [ip, "netns", "exec", probe, nft, "-f", "-"],
            input="table ip probe {\n chain c {\n type nat hook postrouting priority 100\n}\n}\n",
        )
    except NetnsError as exc:
        return f"{PRIVILEGE_MESSAGE} ({exc})"
    finally:
        _delete_namespace(probe)
        _remove_owner(prefix)
    return None


@dataclass
class NsProcess:
    """A process started by :meth:`NatTopology.popen`, with where its output goes."""

    name: str
    ns: str
    argv: list[str]
    proc: subprocess.Popen[Any]
    stdout_path: Path | None
    stderr_path: Path | None
    returncode: int | None = field(default=None)

    def read_stdout(self) -> str:
        return _read(self.stdout_path)

    def read_stderr(self) -> str:
        return _read(self.stderr_path)


def _read(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _exited(proc: subprocess.Popen[Any]) -> bool:
    """Has it exited? Does not reap it: the zombie keeps its PID (= its process group id)
    from being reused until it is reaped, so a later killpg cannot hit a stranger."""
    if proc.returncode is not None:
        return True
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _wait_exited(proc: subprocess.Popen[Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _exited(proc):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def stop_process(proc: subprocess.Popen[Any], *, term_timeout: float = 3.0) -> int | None:
    """Stop a process that leads a session of its own, by its PID: SIGTERM, then SIGKILL
    to its process group after ``term_timeout``; kill what is left in the group; reap it.
    Returns its exit code."""
    if proc.returncode is not None:
        return proc.returncode
    pid = proc.pid
    if not _exited(proc):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_exited(proc, term_timeout):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            _wait_exited(proc, term_timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=term_timeout)
    return proc.returncode


def _deathsig_prefix() -> list[str]:
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


class NatTopology:
    """Namespaces ``pub`` (relay), ``nat1``/``nat2`` (NAT routers), ``a``/``b`` (clients).

    A context manager: ``__enter__`` builds (and tears down what it built if a step
    fails, then raises :class:`NetnsError`), ``__exit__`` stops the processes and deletes
    the namespaces. :meth:`close` is idempotent. Output of :meth:`popen` processes goes
    to files in ``workdir`` unless ``stdout``/``stderr`` are given. ``prefix`` fixes the
    namespace prefix (default: a fresh ``pyim<4 hex>`` no existing namespace uses).
    """

    relay_ip = RELAY_IP
    nat1_public_ip = NAT1_PUBLIC_IP
    nat2_public_ip = NAT2_PUBLIC_IP
    a_ip = A_IP
    b_ip = B_IP
    public_net = PUBLIC_NET

    def __init__(self, workdir: Path, *, prefix: str | None = None) -> None:
        if prefix is not None and not re.fullmatch(r"[a-z0-9]{1,10}", prefix):
            raise ValueError(f"prefix {prefix!r}: 1-10 of [a-z0-9] (names are <prefix>-nat1)")
        self.workdir = Path(workdir)
        self._prefix = prefix
        self._created: list[str] = []
        self._processes: list[NsProcess] = []
        self._built = False
        self._closed = False
        self._counter = 0
        self._ipbin = ""
        self._nftbin = ""

    # ---------------------------------------------------------------- names

    @property
    def prefix(self) -> str:
        if self._prefix is None:
            raise NetnsError("the topology is not built (use it as a context manager)")
        return self._prefix

    def _ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    @property
    def ns_pub(self) -> str:
        return self._ns("pub")

    @property
    def ns_nat1(self) -> str:
        return self._ns("nat1")

    @property
    def ns_nat2(self) -> str:
        return self._ns("nat2")

    @property
    def ns_a(self) -> str:
        return self._ns("a")

    @property
    def ns_b(self) -> str:
        return self._ns("b")

    @property
    def namespaces(self) -> list[str]:
        """All five namespace names (whether built yet or not)."""
        return [self.ns_pub, self.ns_nat1, self.ns_nat2, self.ns_a, self.ns_b]

    @property
    def processes(self) -> list[NsProcess]:
        return list(self._processes)

    # ---------------------------------------------------------------- build

    def _pick_prefix(self) -> str:
        existing = set(list_namespaces())
        for _ in range(50):
            prefix = f"pyim{secrets.token_hex(2)}"
            if not any(name.startswith(prefix + "-") for name in existing):
                return prefix
        raise NetnsError("no free pyim<hex> namespace prefix after 50 tries")

    def _ip(self, ns: str, *args: str) -> None:
        _exec([self._ipbin, "-n", ns, *args])

    def _add_namespace(self, role: str) -> str:
        name = self._ns(role)
        _exec([self._ipbin, "netns", "add", name])
        self._created.append(name)
        self._ip(name, "link", "set", "lo", "up")
        return name

    def _veth(self, ns1: str, if1: str, ns2: str, if2: str) -> None:
        """A veth pair created directly in its two namespaces (never in the host's)."""
        self._ip(ns1, "link", "add", "name", if1, "type", "veth", "peer", "name", if2, "netns", ns2)

    def _sysctl(self, ns: str, key: str, value: str) -> None:
        path = "/proc/sys/" + key.replace(".", "/")
        _exec([self._ipbin, "netns", "exec", ns, "sh", "-c", f"echo {value} > {path}"])

    def _nat_rules(self) -> str:
        return f"""\
table ip pyim_nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{WAN_IF}" masquerade
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname "{WAN_IF}" oifname "{LAN_IF}" ct state established,related accept
        iifname "{WAN_IF}" oifname "{LAN_IF}" counter drop
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "{WAN_IF}" ct state established,related accept
        iifname "{WAN_IF}" meta l4proto icmp accept
        iifname "{WAN_IF}" counter drop
    }}
}}
"""

    def _build(self) -> None:
        self._ipbin = binary("ip")
        self._nftbin = binary("nft")
        self.workdir.mkdir(parents=True, exist_ok=True)
        remove_stale()
        if self._prefix is None:
            self._prefix = self._pick_prefix()
        _write_owner(self._prefix)

        pub = self._add_namespace("pub")
        nat1 = self._add_namespace("nat1")
        nat2 = self._add_namespace("nat2")
        a = self._add_namespace("a")
        b = self._add_namespace("b")

        # Public segment: a bridge in pub holding the relay's address.
        self._ip(pub, "link", "add", BRIDGE_IF, "type", "bridge")
        self._ip(pub, "addr", "add", f"{RELAY_IP}/{PUBLIC_PREFIX}", "dev", BRIDGE_IF)
        self._ip(pub, "link", "set", BRIDGE_IF, "up")

        routers = (
            (nat1, "n1", NAT1_PUBLIC_IP, NAT1_LAN_IP, a, A_IP),
            (nat2, "n2", NAT2_PUBLIC_IP, NAT2_LAN_IP, b, B_IP),
        )
        for nat, port, public_ip, lan_ip, client, client_ip in routers:
            # Public leg: nat:wan <-> pub:port (enslaved to the bridge).
            self._veth(nat, WAN_IF, pub, port)
            self._ip(pub, "link", "set", port, "master", BRIDGE_IF)
            self._ip(pub, "link", "set", port, "up")
            self._ip(nat, "addr", "add", f"{public_ip}/{PUBLIC_PREFIX}", "dev", WAN_IF)
            self._ip(nat, "link", "set", WAN_IF, "up")
            # Private leg: nat:lan <-> client:eth0.
            self._veth(nat, LAN_IF, client, CLIENT_IF)
            self._ip(nat, "addr", "add", f"{lan_ip}/{LAN_PREFIX}", "dev", LAN_IF)
            self._ip(nat, "link", "set", LAN_IF, "up")
            self._ip(client, "addr", "add", f"{client_ip}/{LAN_PREFIX}", "dev", CLIENT_IF)
            self._ip(client, "link", "set", CLIENT_IF, "up")
            self._ip(client, "route", "add", "default", "via", lan_ip)
            # Router: forwarding, masquerade, stateful filter.
            self._sysctl(nat, "net.ipv4.ip_forward", "1")
            nft = [self._ipbin, "netns", "exec", nat, self._nftbin, "-f", "-"]
            _exec(nft, input=self._nat_rules())
        self._built = True

    def __enter__(self) -> NatTopology:
        if self._closed:
            raise NetnsError("a NatTopology cannot be built twice")
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---------------------------------------------------------------- teardown

    def close(self) -> None:
        """Stop every tracked process (by PID), delete the namespaces (which removes the
        veths and the bridge) and the owner record. Idempotent; never raises."""
        for record in reversed(self._processes):
            with contextlib.suppress(Exception):
                record.returncode = stop_process(record.proc)
        for name in reversed(self._created):
            _delete_namespace(name)
        self._created.clear()
        if self._prefix is not None:
            _remove_owner(self._prefix)
        self._built = False
        self._closed = True

    # ---------------------------------------------------------------- processes

    def _check_ns(self, ns: str) -> None:
        if not self._built:
            raise NetnsError("the topology is not built (use it as a context manager)")
        if ns not in self.namespaces:
            raise NetnsError(f"{ns!r} is not a namespace of this topology: {self.namespaces}")

    def _netns_argv(self, ns: str, argv: Sequence[str]) -> list[str]:
        return [self._ipbin, "netns", "exec", ns, *argv]

    def popen(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> subprocess.Popen[Any]:
        """Start ``argv`` inside namespace ``ns`` (``ip netns exec``), tracked and stopped
        by PID at teardown (or earlier with :meth:`stop`).

        ``env`` is laid over ``os.environ`` (pass e.g. ``{"PYTHONPATH": ...}``).
        Unless given in ``kwargs``, stdin is /dev/null and stdout/stderr go to
        ``workdir/<name>.stdout.log`` and ``workdir/<name>.stderr.log`` (``name``
        defaults to ``<role>-<program>-<n>``). Other ``kwargs`` go to
        :class:`subprocess.Popen` (``start_new_session`` is forced on).
        """
        self._check_ns(ns)
        self._counter += 1
        if name is None:
            role = ns.removeprefix(self.prefix + "-")
            name = f"{role}-{Path(argv[0]).name}-{self._counter}"
        full_env = dict(os.environ)
        if env is not None:
            full_env.update(env)
        kwargs.pop("start_new_session", None)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        stdout_path = stderr_path = None
        opened = []
        try:
            if "stdout" not in kwargs:
                stdout_path = self.workdir / f"{name}.stdout.log"
                kwargs["stdout"] = stdout_path.open("wb")
                opened.append(kwargs["stdout"])
            if "stderr" not in kwargs:
                stderr_path = self.workdir / f"{name}.stderr.log"
                kwargs["stderr"] = stderr_path.open("wb")
                opened.append(kwargs["stderr"])
            proc = subprocess.Popen(
                _deathsig_prefix() + self._netns_argv(ns, argv),
                env=full_env,
                start_new_session=True,
                **kwargs,
            )
        finally:
            for handle in opened:
                handle.close()  # the child has its own copy
        self._processes.append(NsProcess(name, ns, list(argv), proc, stdout_path, stderr_path))
        return proc

    def record(self, proc: subprocess.Popen[Any]) -> NsProcess:
        """The :class:`NsProcess` (name, log paths) of a process started by :meth:`popen`."""
        for record in self._processes:
            if record.proc is proc:
                return record
        raise NetnsError(f"process {proc.pid} was not started by this topology")

    def stop(self, proc: subprocess.Popen[Any], *, term_timeout: float = 3.0) -> int | None:
        """Stop one :meth:`popen` process now (SIGTERM, then SIGKILL); its exit code."""
        record = self.record(proc)
        record.returncode = stop_process(proc, term_timeout=term_timeout)
        return record.returncode

    def run(
        self,
        ns: str,
        argv: Sequence[str],
        timeout: float = 10.0,
        *,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command inside ``ns`` and capture its output (text). On timeout
        its process group is killed and :class:`subprocess.TimeoutExpired` is raised."""
        self._check_ns(ns)
        full_env = dict(os.environ)
        if env is not None:
            full_env.update(env)
        cmd = _deathsig_prefix() + self._netns_argv(ns, argv)
        proc = subprocess.Popen(
            cmd,
            env=full_env,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        finally:
            stop_process(proc, term_timeout=1.0)  # reaped already unless interrupted
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

    def wait_for_output(
        self,
        proc: subprocess.Popen[Any],
        text: str,
        *,
        timeout: float = 5.0,
        stream: str = "stdout",
    ) -> bool:
        """Poll ``proc``'s log file (``stream``: "stdout" or "stderr") until it contains
        ``text``; False on timeout or if the process exits without writing it."""
        record = self.record(proc)
        path = record.stdout_path if stream == "stdout" else record.stderr_path
        if path is None:
            raise NetnsError(f"{record.name}: its {stream} does not go to a log file")
        deadline = time.monotonic() + timeout
        while True:
            if text in _read(path):
                return True
            if proc.poll() is not None:
                return text in _read(path)
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    # ---------------------------------------------------------------- reports

    def diagnostics(self) -> str:
        """Addresses, routes and nft rules (with counters) of every namespace; for
        failure reports. Never raises."""
        if not self._built:
            return "<topology not built>"
        parts: list[str] = []
        for ns in self.namespaces:
            for argv in (
                [self._ipbin, "-n", ns, "-br", "addr"],
                [self._ipbin, "-n", ns, "route"],
            ):
                parts.append(self._capture(ns, argv))
            if ns in (self.ns_nat1, self.ns_nat2):
                parts.append(
                    self._capture(ns, self._netns_argv(ns, [self._nftbin, "list", "ruleset"]))
                )
        return "\n".join(parts)

    @staticmethod
    def _capture(ns: str, argv: list[str]) -> str:
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
                stdin=subprocess.DEVNULL,
            )
            out = (done.stdout + done.stderr).rstrip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            out = f"<{exc}>"
        shown = " ".join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv))
        return f"[{ns}] $ {shown}\n{out}"

    def report_sections(self, lines: int = 200) -> list[tuple[str, str]]:
        """(title, text) pairs: the last ``lines`` lines of every process's stdout/stderr
        log, then :meth:`diagnostics`. Suitable for ``item.add_report_section``."""
        sections: list[tuple[str, str]] = []
        for record in self._processes:
            code = record.returncode if record.returncode is not None else record.proc.poll()
            for stream, path in (("stdout", record.stdout_path), ("stderr", record.stderr_path)):
                if path is None:
                    continue
                tail = "\n".join(_read(path).splitlines()[-lines:])
                title = f"{record.name} [{record.ns}] {stream} (exit {code})"
                sections.append((title, tail))
        sections.append(("netns topology", self.diagnostics()))
        return sections

    def report(self, lines: int = 200) -> str:
        """:meth:`report_sections` as one text."""
        return "\n\n".join(f"----- {t} -----\n{body}" for t, body in self.report_sections(lines))
