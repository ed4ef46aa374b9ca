"""Run by test_train.py: `python checkpoint_fault_script.py NAME K TRAIN_ARGS...`
runs train.py and SIGKILLs the process (no clean-up code runs, as after a
real kill) just before the K-th atomic rename onto the checkpoint file NAME
(e.g. training_metadata.json: after the epoch's weights, before their
metadata)."""

import os
import signal
import sys

import train

name, kill_at, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
replace, seen = os.replace, 0


def killing_replace(source, destination, *args, **kwargs):
    global seen
    if os.path.basename(destination) == name:
        seen += 1
        if seen == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    return replace(source, destination, *args, **kwargs)


os.replace = killing_replace
sys.exit(train.main(argv))
