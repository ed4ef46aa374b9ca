"""Counting the files that processes open under a folder, from outside them:
Linux inotify (through ctypes, no extra package) reports every open of a
file in a watched folder, whatever process (or C++ library: tf.data) opens it.

    with FileOpens(root) as opens:
        ... run the processes ...
    opens.counts  # Counter {path: times opened}
"""

import collections
import ctypes
import ctypes.util
import os
import select
import struct
import threading

IN_OPEN = 0x00000020
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name


class FileOpens:
    def __init__(self, root):
        self.root = str(root)
        self.counts = collections.Counter()
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

    def __enter__(self):
        self._fd = self._libc.inotify_init1(IN_NONBLOCK)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self._folders = {}
        for folder, _, _ in os.walk(self.root):
            wd = self._libc.inotify_add_watch(self._fd, folder.encode(), IN_OPEN)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder}")
            self._folders[wd] = folder
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _drain(self):
        while True:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return
            offset = 0
            while offset < len(data):
                wd, mask, _, length = EVENT.unpack_from(data, offset)
                name = data[offset + EVENT.size: offset + EVENT.size + length].rstrip(b"\0").decode()
                offset += EVENT.size + length
                if mask & IN_OPEN and not mask & IN_ISDIR and name:
                    self.counts[os.path.join(self._folders[wd], name)] += 1

    def _read(self):
        while not self._stop.is_set():
            select.select([self._fd], [], [], 0.1)
            self._drain()

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._drain()
        os.close(self._fd)
        return False
