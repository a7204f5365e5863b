"""`ocirun proot` lists the extension options in PRoot's words and rejects bad values
with one line."""

from __future__ import annotations

from tests.extensions.guest import sh
from tests.helpers import run_ocirun

PROOT_WORDING = [
    "-k, --kernel-release string",
    "Make current kernel appear as kernel release",
    "-0, --root-id",
    'Make current user appear as "root" and fake its privileges.',
    "-i, --change-id string",
    "Make current user and group appear as *string*",
    "-p, --port string",
    "Map ports to others with the syntax as",
    "-n, --netcoop",
    "Activates the network cooperation mode.",
    "-l, --link2symlink",
    "Replace hard links with symlinks, pretending they are really hardlinks",
]


def test_help_lists_the_extension_options():
    proc = run_ocirun("proot", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for phrase in PROOT_WORDING:
        assert " ".join(phrase.split()) in text, phrase


def test_bad_values_are_one_line_errors(tmp_path):
    for args, word in [(["-i", "x:y"], "-i/--change-id"), (["-p", "80"], "-p/--port"),
                       (["-p", "80:0"], "-p/--port"), (["-k", "\\x\\"], "-k/--kernel-release")]:
        proc = run_ocirun("proot", "-r", str(tmp_path), *args, "/bin/true")
        assert proc.returncode == 125, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ocirun: ") and word in lines[0], proc.stderr


def test_S_implies_root_id(debian_rootfs_copy):
    proc = run_ocirun("proot", "-S", str(debian_rootfs_copy), "/bin/sh", "-c", "id -u; whoami")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "root"]


def test_i_with_lone_uid(debian_rootfs):
    assert sh(debian_rootfs, "id -u; id -g", "-i", "42").stdout.split() == ["42", "42"]


def test_plan_hook_builds_the_extension_list(tmp_path, monkeypatch):
    from ocirun.cli.proot_ext import extensions_hook as plan_hook
    from ocirun.engine.plan import EnginePlan

    monkeypatch.setenv("OCIRUN_LINK2SYMLINK", "1")
    plan = EnginePlan(argv=["true"], rootfs=str(tmp_path))
    plan_hook(plan, {"root_id": True, "kernel_release": "4.0", "ports": ("80:8080 443:8443",),
                     "netcoop": True, "link2symlink": None, "change_id": None})
    names = [e.name for e in plan.extensions]
    assert names == ["link2symlink", "kompat", "fake_id0", "portmap"]
    fake, ports = plan.extensions[2], plan.extensions[3]
    assert (fake.uid, fake.gid) == (0, 0)
    assert ports.map.static == {80: 8080, 443: 8443} and ports.netcoop
    plan = EnginePlan(argv=["true"], rootfs=str(tmp_path))
    monkeypatch.setenv("OCIRUN_LINK2SYMLINK", "0")
    plan_hook(plan, {"change_id": "5:6", "alias_s": None})
    assert [(e.name, e.uid, e.gid) for e in plan.extensions] == [("fake_id0", 5, 6)]
    plan = EnginePlan(argv=["true"], rootfs=str(tmp_path))
    plan_hook(plan, {"alias_s": str(tmp_path)})  # -S implies -0
    assert [e.name for e in plan.extensions] == ["fake_id0"]
