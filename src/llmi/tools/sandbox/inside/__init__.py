"""What runs inside the code sandbox: standalone scripts that never import llmi.

``worker`` (the supervisor: talks to llmi, watches each job) forks ``zygote`` (the warm
interpreter that forks one process per job) before either has seen a job; each job process
enters its own clean start (``jail``) and renders with ``render``; ``frames`` is the wire
format on every pipe. The folder is bound read-only into the sandbox at ``/.llmi``.
"""
