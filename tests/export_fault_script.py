"""Run by test_export.py: `python export_fault_script.py DIR K NEW_ENTRIES` installs
a small fake export into DIR with `models.export.publish` and SIGKILLs itself
(no clean-up code runs, as after a real kill) just before its K-th file-system
change. K = 0 runs to the end and prints how many changes there were.
NEW_ENTRIES: "model.keras,saved_model" or "model.keras" (a JAX export)."""

import os
import shutil
import signal
import sys

from models import export

target, kill_at, entries = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
changes = 0


def killing(function):
    def wrapper(*args, **kwargs):
        global changes
        changes += 1
        if changes == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return function(*args, **kwargs)
    return wrapper


for module, name in ((os, "rename"), (os, "replace"), (os, "rmdir"), (os, "unlink"),
                     (os, "mkdir"), (os, "symlink"), (shutil, "rmtree"), (shutil, "copy2")):
    setattr(module, name, killing(getattr(module, name)))


def write(staging):
    if "model.keras" in entries:
        (staging / "model.keras").write_text("new model")
    if "saved_model" in entries:
        (staging / "saved_model").mkdir()
        (staging / "saved_model" / "saved_model.pb").write_text("new graph")


export.publish(target, write)
print(changes)
