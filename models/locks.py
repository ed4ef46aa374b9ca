"""Advisory locks on files that train.py's outputs own (a cache's, a
checkpoint folder's), so that two runs never write one output at once."""


def try_lock(path):
    """An open file holding an exclusive lock on `path` (created if absent),
    or None if another process holds it. The lock ends when the file is
    closed or the process ends, however it ends. Without fcntl (Windows) no
    lock is taken."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        return open(path, "a")  # noqa: SIM115 - closed by the caller
    handle = open(path, "a")  # noqa: SIM115 - closed by the caller
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    except OSError:  # a file system without locks
        pass
    return handle
