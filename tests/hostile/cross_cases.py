"""Hostile chart code that tries to leave something for a *later* chart, and a probe that looks.

Each case has a ``plant`` (a job that leaves files, IPC objects, daemons, keys, modes or objects
behind, whatever its own outcome) and a ``probe`` (a later job that renders and prints ``clean``
when nothing of the plant reaches it, else what it found). The test runs each pair on one
shared engine with a one-worker pool, so that plant and probe are served by the same worker,
back to back: first within one document, then across two documents; and it checks that the
worker was never replaced and the next chart and document render as usual.

Names the plant and probe share (a SysV key, a socket name) are fixed, and ``MARK`` is a
string the plant holds that the probe assembles at run time (so the probe's own code never
contains it).
"""

from __future__ import annotations

from dataclasses import dataclass

MARK = "llmi-plant-9c41e2"
_NEEDLE = "needle = '-'.join(['llmi', 'plant', '9c41e2'])\n"
_LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nKEY = 0x4C4C4D49\n"
_DRAW = "\nplt.plot([1, 2])\n"
_DAEMON = "import os, socket, time\nif os.fork() == 0:\n    os.setsid()\n"  # then the daemon's body


@dataclass(frozen=True)
class CrossCase:
    name: str
    plant: str
    probe: str  # must render, printing "clean" last
    machine: str = ""  # only on this platform.machine()


# fmt: off
CROSS_CASES: tuple[CrossCase, ...] = (
    CrossCase(
        "objects and frames of the last job",
        f"secret = {MARK!r}\nprint(secret)\nplt.title(secret)" + _DRAW,
        "import gc, sys\n" + _NEEDLE
        + "found = []\n"
          "def look(x):\n"
          "    if isinstance(x, str) and x is not needle and needle in x:\n        found.append(x[:60])\n"
          "    elif isinstance(x, (bytes, bytearray)) and needle.encode() in x:\n        found.append(bytes(x[:60]))\n"
          "for obj in gc.get_objects():\n"
          "    if isinstance(obj, dict):\n        for k, v in list(obj.items()):\n            look(k)\n            look(v)\n"
          "    elif isinstance(obj, (list, tuple, set, frozenset)):\n        for v in list(obj):\n            look(v)\n"
          "frame = sys._getframe()\n"
          "while frame is not None:\n    for v in list(frame.f_locals.values()):\n        look(v)\n    frame = frame.f_back\n"
          "print(f'found {found[:3]!r}' if found else 'clean')" + _DRAW,
    ),
    CrossCase(
        "files in the working directory and /tmp",
        f"import os\nopen('leak.txt', 'w').write({MARK!r})\nos.makedirs('/tmp/.hidden/deeper')\n"
        f"open('/tmp/.hidden/deeper/leak', 'w').write({MARK!r})" + _DRAW,
        # the interpreter, the virtualenv and the sandbox's scripts are bound read-only at their
        # own paths, the same for every job: under /tmp when llmi itself is installed there
        "import os, sys\n"
        "own = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, *sys.path) if p}\n"
        "def bound(p):\n    return any(p == o or p.startswith(o + os.sep) for o in own)\n"
        "def above(p):\n    return any(o.startswith(p + os.sep) for o in own)\n"
        "files = []\n"
        "for d, ds, fs in os.walk('/tmp'):\n"
        "    ds[:] = [x for x in ds if not bound(os.path.realpath(os.path.join(d, x)))]\n"
        "    files += [os.path.join(d, f) for f in fs]\n"
        "extra = {n for n in os.listdir('/tmp') if not above('/tmp/' + n) and not bound('/tmp/' + n)}\n"
        "extra -= {'.llmi-mpl', '.llmi-cache'}\n"
        "print(f'found {files} {extra}' if files or extra else 'clean')" + _DRAW,
    ),
    CrossCase(
        "files in /dev/shm",
        f"open('/dev/shm/leak', 'w').write({MARK!r})" + _DRAW,
        "import os\nprint('found' if os.path.exists('/dev/shm/leak') else 'clean')" + _DRAW,
    ),
    CrossCase(
        "a mode-000 directory tree and an unreadable /tmp",
        "import os\nos.makedirs('/tmp/a/b/c')\nfor d in ('/tmp/a/b/c', '/tmp/a/b', '/tmp/a'):\n"
        "    open(d + '/f', 'w').write('x')\n    os.chmod(d, 0)\nos.chmod('/tmp', 0)" + _DRAW,
        "import os\nopen('/tmp/mine', 'w').write('ok')\n"
        "print('found' if os.path.exists('/tmp/a') else 'clean')" + _DRAW,
    ),
    CrossCase(
        "a /tmp full of inodes",
        "import os\nos.makedirs('/tmp/pin')\ntry:\n    for i in range(10 ** 6):\n        open(f'/tmp/pin/{i}', 'w').close()\n"
        "except OSError:\n    pass\nos.chmod('/tmp/pin', 0)" + _DRAW,
        "import os\nfor i in range(10000):\n    open(f'/tmp/{i}', 'w').close()\nprint('clean')" + _DRAW,
    ),
    CrossCase(
        "a full /tmp",
        "import os\ntry:\n    for i in range(10):\n        with open(f'/tmp/fill{i}', 'wb') as f:\n            f.write(bytes(60 << 20))\n"
        "except OSError:\n    pass" + _DRAW,
        "with open('/tmp/room', 'wb') as f:\n    f.write(bytes(50 << 20))\nprint('clean')" + _DRAW,
    ),
    CrossCase(
        "System V shared memory",
        _LIBC + f"libc.shmat.restype = ctypes.c_void_p\nid_ = libc.shmget(KEY, 4096, 0o1666)\n"
        f"ctypes.memmove(libc.shmat(id_, None, 0), {MARK.encode()!r}, {len(MARK)})" + _DRAW,
        _LIBC + "print('found' if libc.shmget(KEY, 0, 0) != -1 else 'clean')" + _DRAW,
    ),
    CrossCase(
        "a System V message queue",
        _LIBC + f"q = libc.msgget(KEY, 0o1666)\nmsg = ctypes.create_string_buffer(b'\\x01' + bytes(7) + {MARK.encode()!r})\n"
        f"libc.msgsnd(q, msg, {len(MARK)}, 0)" + _DRAW,
        _LIBC + "print('found' if libc.msgget(KEY, 0) != -1 else 'clean')" + _DRAW,
    ),
    CrossCase(
        "System V semaphores",
        _LIBC + "libc.semget(KEY, 4, 0o1666)" + _DRAW,
        _LIBC + "print('found' if libc.semget(KEY, 0, 0) != -1 else 'clean')" + _DRAW,
    ),
    CrossCase(
        "a POSIX message queue",
        _LIBC + "libc.mq_open(b'/llmi-leak', os.O_CREAT | os.O_RDWR, 0o666, None)" + _DRAW,
        _LIBC + "print('found' if libc.mq_open(b'/llmi-leak', os.O_RDONLY) != -1 else 'clean')" + _DRAW,
    ),
    CrossCase(
        "POSIX shared memory",
        f"import _posixshmem, os\nfd = _posixshmem.shm_open('/llmi-leak', os.O_CREAT | os.O_RDWR, 0o666)\nos.write(fd, {MARK.encode()!r})" + _DRAW,
        "import _posixshmem, os\ntry:\n    _posixshmem.shm_open('/llmi-leak', os.O_RDONLY, 0)\n    print('found')\n"
        "except FileNotFoundError:\n    print('clean')" + _DRAW,
    ),
    CrossCase(
        "a key in the user keyring",
        _LIBC + f"libc.syscall(248, b'user', b'llmi-leak', {MARK.encode()!r}, {len(MARK)}, -4)" + _DRAW,
        _LIBC + "found = libc.syscall(250, 10, -4, b'user', b'llmi-leak', 0)\nprint('found' if found != -1 else 'clean')" + _DRAW,
        machine="x86_64",
    ),
    CrossCase(
        "a daemon listening on an abstract socket",
        _DAEMON + "    s = socket.socket(socket.AF_UNIX)\n    s.bind('\\0llmi-leak')\n    s.listen()\n"
        "    while True:\n        s.accept()[0].send(b'x')\n" + _DRAW,
        "import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect('\\0llmi-leak')\n    print('found')\n"
        "except OSError:\n    print('clean')" + _DRAW,
    ),
    CrossCase(
        "a daemon on the sandbox's loopback",
        _DAEMON + "    s = socket.create_server(('127.0.0.1', 47123))\n    while True:\n        s.accept()[0].send(b'x')\n" + _DRAW,
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 47123), timeout=2)\n    print('found')\n"
        "except OSError:\n    print('clean')" + _DRAW,
    ),  # each job's network namespace has no loopback up: the daemon cannot even listen
    CrossCase(
        "a port left in TIME_WAIT",
        # the closing side of a connection keeps its port for a minute after every process is gone
        "import socket\nl = socket.create_server(('127.0.0.1', 47555))\nc = socket.create_connection(('127.0.0.1', 47555))\n"
        "a, _ = l.accept()\na.close()\nc.close()\nl.close()" + _DRAW,
        "import errno, socket\ns = socket.socket()\ntry:\n    s.bind(('127.0.0.1', 47555))\n    print('clean')\n"
        "except OSError as exc:\n    print('found' if exc.errno == errno.EADDRINUSE else 'clean')" + _DRAW,
    ),
    CrossCase(
        "a listening socket kept alive in flight",
        # sent over a socket pair to itself, the listener outlives every process of the job until
        # the kernel's collector finds the cycle
        "import socket\nl = socket.socket(socket.AF_UNIX)\nl.bind('\\0llmi-inflight')\nl.listen()\n"
        "a, b = socket.socketpair(socket.AF_UNIX)\nsocket.send_fds(a, [b'x'], [b.fileno(), l.fileno()])" + _DRAW,
        "import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect('\\0llmi-inflight')\n    print('found')\n"
        "except OSError:\n    print('clean')" + _DRAW,
    ),
    CrossCase(
        "a FIFO, a socket file and a symlink in /tmp and /dev/shm",
        "import os, socket\nos.mkfifo('/tmp/fifo')\nsocket.socket(socket.AF_UNIX).bind('/dev/shm/sock')\n"
        "os.symlink('/usr', '/tmp/link')" + _DRAW,
        "import os\nleft = [p for p in ('/tmp/fifo', '/dev/shm/sock', '/tmp/link') if os.path.lexists(p)]\n"
        "print(f'found {left}' if left else 'clean')" + _DRAW,
    ),
    CrossCase(
        "an extended attribute on /tmp itself",
        f"import os\nos.setxattr('/tmp', 'user.leak', {MARK.encode()!r})" + _DRAW,
        "import os\ntry:\n    os.getxattr('/tmp', 'user.leak')\n    print('found')\nexcept OSError:\n    print('clean')" + _DRAW,
    ),
    CrossCase(
        "the environment, umask and limits of the last job",
        "import os, resource\nos.environ['LLMI_LEAK'] = 'x'\nos.putenv('LLMI_LEAK2', 'x')\nos.umask(0)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))" + _DRAW,
        "import os, resource\numask = os.umask(0o22)\n"
        "dirty = 'LLMI_LEAK' in os.environ or 'LLMI_LEAK2' in os.environ or umask == 0\n"
        "dirty = dirty or resource.getrlimit(resource.RLIMIT_NOFILE)[1] == 16\n"
        "print('found' if dirty else 'clean')" + _DRAW,
    ),
)
# fmt: on
