"""`python tests/logical_cpus.py N train.py-arguments...`: runs train.py's main
with the CPU split into N logical devices (as a host with N accelerators)."""

import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * int(sys.argv[1])
)

import train  # noqa: E402

sys.exit(train.main(sys.argv[2:]))
