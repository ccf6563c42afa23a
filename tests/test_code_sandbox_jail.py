"""The job's clean start (``inside/jail.py``) on its own, in a child process of the test.

What a job process does before it reads its code: new mount and IPC namespaces with a tmpfs of
its own, hidden ``/proc``, hard limits, a uid of its own, a seccomp filter. Each check runs in
a fresh ``python`` so nothing here touches the test process.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmi.tools.sandbox.launch import INSIDE_DIR

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and uids need root here")


def run(body: str) -> str:
    """Run ``body`` after ``import jail`` in a fresh interpreter; its output."""
    script = f"import sys, os, ctypes\nsys.path.insert(0, {INSIDE_DIR!r})\nimport jail\n" + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="no filter for this machine")
def test_seccomp_denies_namespaces_and_keyrings_and_keeps_threads_and_processes():
    out = run(
        """
        import threading, subprocess
        libc = ctypes.CDLL(None, use_errno=True)
        assert jail.confine()
        def errno_of(result):
            return 0 if result != -1 else ctypes.get_errno()
        print(errno_of(libc.unshare(0x10000000)))           # CLONE_NEWUSER: EPERM
        print(errno_of(libc.unshare(0x00020000)))           # CLONE_NEWNS: EPERM
        print(errno_of(libc.syscall(435, 0, 0)))            # clone3: ENOSYS (glibc falls back)
        print(errno_of(libc.mount(b'none', b'/', None, 0, None)))
        print(errno_of(libc.personality(0x0400000)))        # READ_IMPLIES_EXEC: EPERM
        print(libc.personality(0xffffffff) & 0xff)           # asking is allowed: PER_LINUX
        t = threading.Thread(target=print, args=('thread',)); t.start(); t.join()
        print(subprocess.run(['true']).returncode)
        """
    )
    assert out.splitlines() == ["1", "1", "38", "1", "1", "0", "thread", "0"]


def test_seccomp_program_shape():
    from llmi.tools.sandbox.inside import jail

    rows = jail.seccomp_program("x86_64")
    assert rows is not None and all(0 <= jt <= 255 and 0 <= jf <= 255 for _, jt, jf, _ in rows)
    assert jail.seccomp_program("aarch64") and jail.seccomp_program("riscv64") is None


@needs_root
def test_fresh_namespaces_give_an_empty_capped_tmp_and_hide_proc(tmp_path: Path):
    for folder in (tmp_path, *tmp_path.parents):
        if str(folder) in ("/", "/tmp"):
            break
        folder.chmod(0o755)  # the job's uid must be able to reach the kept folder
    out = run(
        f"""
        import socket, encodings.idna  # before the uid changes: its files may be unreadable after
        keep = {str(tmp_path)!r}
        open(keep + '/kept.txt', 'w').write('still here')
        assert jail.fresh_namespaces('/tmp', 1 << 20, 64, 4242, [keep], ['/dev/shm'], ['/proc', '/sys'])
        os.setgroups([]); os.setgid(4242); os.setuid(4242)
        print(sorted(os.listdir('/tmp')) == sorted(set([keep.split('/')[2]])) or os.listdir('/tmp'))
        print(open(keep + '/kept.txt').read())
        print(os.listdir('/proc'), os.path.exists('/proc/self'))
        made = 0
        try:
            while True:
                open(f'/tmp/f{{made}}', 'w').close()
                made += 1
        except OSError as exc:
            print(made < 64, exc.errno)
        try:  # a network namespace of its own, with nothing up in it
            socket.create_connection(('127.0.0.1', 9), timeout=1)
        except OSError as exc:
            print(exc.errno)
        """
    )
    assert out.splitlines() == ["True", "still here", "[] False", "True 28", "101"]


def test_a_job_is_the_first_the_oom_killer_takes():
    out = run(
        """
        jail.first_to_go()
        print(open('/proc/self/oom_score_adj').read().strip())
        import subprocess  # inherited by what the job forks
        print(subprocess.run(['cat', '/proc/self/oom_score_adj'], capture_output=True, text=True).stdout.strip())
        """
    )
    assert out.splitlines() == ["1000", "1000"]


@needs_root
def test_drop_privileges_and_hard_limits():
    out = run(
        """
        import resource
        jail.set_limits({"nofile": 64, "nproc": 32, "stack": 8 << 20, "memory": 1 << 30}, jail.vm_size())
        jail.drop_privileges(4243)
        print(os.getuid(), os.geteuid(), resource.getrlimit(resource.RLIMIT_STACK))
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
        except ValueError:
            print('cannot raise')
        try:
            os.setuid(0)
        except PermissionError:
            print('cannot become root')
        """
    )
    assert out.splitlines() == ["4243 4243 (8388608, 8388608)", "cannot raise", "cannot become root"]


@needs_root
def test_fresh_directory_refuses_a_leftover(tmp_path: Path):
    out = run(
        f"""
        home = {str(tmp_path / "job")!r}
        jail.fresh_directory(home, 4244)
        print(os.stat(home).st_uid, oct(os.stat(home).st_mode & 0o777))
        try:
            jail.fresh_directory(home, 4245)
        except jail.JailError as exc:
            print('refused:', 'still there' in str(exc))
        """
    )
    assert out.splitlines() == ["4244 0o700", "refused: True"]
