"""Run by test_distribute.py as one of several processes of a JAX cluster on
127.0.0.1: trains through train.run with the given train.py arguments, then
writes OUT/process<I>.npz: its final parameters, optimizer step count and
summary, and the augmentation it draws (as part of the cluster) for 4
identical images per process."""

import json
import pathlib
import sys

out = pathlib.Path(sys.argv[1])
import train  # noqa: E402

summary = train.run(train.parse_args(sys.argv[2:]))

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

model = summary.pop("model")
index, count = jax.process_index(), jax.process_count()
layer = model.get_layer("augment")
per_process = 4
image = np.arange(32 * 32 * 3, dtype="float32").reshape(32, 32, 3) % 255
sharding = keras.distribution.distribution().get_data_layout((per_process * count, 32, 32, 3)).backend_layout
images = jax.make_array_from_process_local_data(sharding, np.repeat(image[None], per_process, axis=0))
state = [v.value for v in layer.non_trainable_variables]
augment = jax.jit(lambda state, x: layer.stateless_call([], state, x, training=True)[0], out_shardings=sharding)
warped = augment(state, images)
shards = sorted(warped.addressable_shards, key=lambda shard: shard.index[0].start)
np.savez(out / f"process{index}.npz",
         summary=json.dumps(summary), iterations=int(model.optimizer.iterations),
         first_image=shards[0].index[0].start, warped=np.concatenate([np.asarray(s.data) for s in shards]),
         **{f"weight{k}": w for k, w in enumerate(model.get_weights())})
print(f"process {index}: done", flush=True)
