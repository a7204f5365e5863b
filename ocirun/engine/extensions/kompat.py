"""`-k/--kernel-release`: make the kernel appear as another release.

What is emulated (and only that, see the README): uname(2)'s release (or every
field with PRoot's `\\sysname\\nodename\\release\\version\\machine\\domainname\\`
form), and the files that say the same thing, /proc/sys/kernel/osrelease and
/proc/version (and /proc/sys/kernel/{ostype,version} with the long form), and
the auxiliary vector's AT_HWCAP when the long form's hwcap field is not -1, as PRoot
does. sethostname/setdomainname by a process that may call them (real or -0 root)
change the names this guest sees, never the host's (PRoot: `-0 -k`, then
`hostname NEW; hostname` shows NEW). This
host kernel (6.x) is newer than anything a guest's C library asks for, so no
missing syscall needs emulating; PRoot's emulation of old-kernel gaps
(accept4, pipe2, ... on 2.6 kernels) has no user here.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile

from ocirun.engine.extension import Extension
from ocirun.engine.extensions.shared.common import host_errors_reported, patch_auxv
from ocirun.engine.extensions.shared.utsname import UTSNAME_SIZE, FakeUname
from ocirun.util import records
from ocirun.util.linux import AT_HWCAP

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from ocirun.engine.extension import Engine
    from ocirun.engine.syscall import Syscall
    from ocirun.engine.tracee import Tracee

# open-like syscalls and the index of their path argument
_OPENS = {"open": 0, "openat": 1, "openat2": 1, "creat": 0, "stat": 0, "lstat": 0,
          "newfstatat": 1, "statx": 1, "access": 0, "faccessat": 1, "faccessat2": 1}


UTS_NAME_MAX = 64
# syscall -> (FakeUname field, the /proc file that shows it)
_SET_NAME = {"sethostname": ("nodename", "/proc/sys/kernel/hostname"),
             "setdomainname": ("domainname", "/proc/sys/kernel/domainname")}


class Kompat(Extension):
    name = "kompat"
    syscalls = frozenset({"uname", *_SET_NAME})

    def __init__(self, release: str):
        self.spec = release
        self.fake = FakeUname.parse(release)
        self._files: dict[str, str] = {}  # guest /proc file -> host replacement
        self._dir: str | None = None
        self.engine: Engine | None = None

    def attach(self, engine: Engine) -> None:
        self.engine = engine
        self._dir = tempfile.mkdtemp(prefix="ocirun-kompat-")
        real = os.uname()
        contents = {}
        if self.fake.release is not None:
            contents["/proc/sys/kernel/osrelease"] = self.fake.release + "\n"
            try:
                with open("/proc/version") as f:
                    version = f.read()
                contents["/proc/version"] = version.replace(real.release, self.fake.release, 1)
            except OSError:
                pass
        if self.fake.sysname is not None:
            contents["/proc/sys/kernel/ostype"] = self.fake.sysname + "\n"
        if self.fake.version is not None:
            contents["/proc/sys/kernel/version"] = self.fake.version + "\n"
        if self.fake.nodename is not None:
            contents["/proc/sys/kernel/hostname"] = self.fake.nodename + "\n"
        if self.fake.domainname is not None:
            contents["/proc/sys/kernel/domainname"] = self.fake.domainname + "\n"
        for guest, text in contents.items():
            self._write_file(guest, text)

    def _write_file(self, guest: str, text: str) -> None:
        """(Re)write the host file shown for the guest's /proc file `guest`."""
        assert self._dir is not None
        host = os.path.join(self._dir, guest.strip("/").replace("/", "_"))
        tmp = host + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o444)
        os.replace(tmp, host)
        self._files[guest] = host

    def on_exec(self, tracee: Tracee) -> None:
        if self.fake.hwcap is not None:
            try:
                patch_auxv(tracee, {AT_HWCAP: self.fake.hwcap})
            except OSError:
                pass

    def _may_set_names(self, tracee: Tracee) -> bool:
        """sethostname needs CAP_SYS_ADMIN: root as the guest sees it (real, or -0's)."""
        return self.engine.guest_euid(tracee) == 0

    def _set_name(self, tracee: Tracee, sc: Syscall) -> None:
        """Keep the guest's new host or domain name (the kernel's EPERM/EINVAL/EFAULT otherwise)."""
        if not self._may_set_names(tracee):
            return  # the kernel answers EPERM
        field, proc_file = _SET_NAME[sc.name]
        length = sc.args[1]
        if length > UTS_NAME_MAX:
            sc.skip(-errno.EINVAL)
            return
        try:
            raw = tracee.read(sc.args[0], length) if length else b""
        except OSError:
            sc.skip(-errno.EFAULT)
            return
        value = raw.decode("utf-8", "surrogateescape")
        self.fake = records.replace(self.fake, **{field: value})
        self._write_file(proc_file, value + "\n")
        sc.skip(0)

    def detach(self, engine: Engine) -> None:
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    @host_errors_reported()
    def on_enter(self, tracee: Tracee, sc: Syscall) -> None:
        if sc.name == "uname":
            sc.want_exit()
            return
        if sc.name in _SET_NAME:
            self._set_name(tracee, sc)
            return
        index = _OPENS.get(sc.name)
        if index is None or not self._files:
            return
        guest = sc.guest_paths.get(index)
        if guest is None or "/proc/" not in guest:
            return
        host = sc.host_paths.get(index, "")
        for name, replacement in self._files.items():
            if guest == name or host == name or host.endswith(name) and "/proc/" in host:
                sc.set_arg(index, sc.push_string(replacement))
                return

    @host_errors_reported()
    def on_exit(self, tracee: Tracee, sc: Syscall) -> None:
        if sc.name != "uname" or sc.result != 0:
            return
        addr = sc.args[0]
        try:
            buf = tracee.read(addr, UTSNAME_SIZE)
            tracee.write(addr, self.fake.apply(buf))
        except OSError:
            pass
