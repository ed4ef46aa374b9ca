"""`RandomTransform`: `ImageDataGenerator`'s random augmentation as a Keras layer."""

import keras

from gpuaug import arguments as arguments_lib, backend, colour, config as config_lib, geometry as geometry_lib, \
    sampling, targets, warp
from gpuaug.backend import ops
from gpuaug.distribute import ReplicaSeedGenerator, current_seed_generator


def _same_size(size, other):
    """Whether two (height, width) pairs may be the same: equal where both
    are Python ints (a dimension known only when run, a tensor, is taken
    to match: a dict call's masks have the images' size)."""
    return all(a == b for a, b in zip(size, other) if isinstance(a, int) and isinstance(b, int))


@keras.saving.register_keras_serializable(package="gpuaug")
class RandomTransform(backend.RunsInTensorFlowGraphs, keras.layers.Layer):
    """Random rotation, shift, shear, zoom, flips, channel shift and brightness,
    per image, with one resampling pass, inside the model.

    The arguments are `ImageDataGenerator`'s, with the same meanings, forms
    and defaults; the layer draws parameters from the same distributions and,
    for given parameters, gives the pixels of `ImageDataGenerator.apply_transform`.

    Args:
        rotation_range: degrees; angle uniform in [-r, r].
        width_shift_range, height_shift_range: a float (< 1: fraction of the
            width/height; >= 1: pixels; uniform in [-f, f]), an int n (a whole
            number of pixels in 0..n-1 with a random sign) or a list of
            allowed values (one of them with a random sign; fractions if all
            are below 1). Note `shift_axes`.
        brightness_range: None or [lower, upper]: brightness factor uniform in
            it, applied as the reference does through 8-bit PIL (so outputs
            are whole levels). Needs 1, 3 or 4 channels.
        shear_range: degrees (counter-clockwise shear angle), uniform in [-s, s].
        zoom_range: a float z (factors in [1 - z, 1 + z]) or [lower, upper];
            two independent factors for x and y; > 1 zooms out.
        channel_shift_range: pixel units; one value added to all channels,
            clipped to the image's own range.
        fill_mode: "constant", "nearest" (default), "reflect" or "wrap", with
            scipy's meaning (as the reference).
        cval: the fill value for "constant", in pixel units.
        horizontal_flip, vertical_flip: randomly flip half of the images
            (True/False; numpy bools and the integers 0/1 too).
        interpolation_order: 0 (nearest) or 1 (bilinear, default).
        data_format: "channels_last" or "channels_first"; defaults to
            `keras.config.image_data_format()`.
        shift_axes: "reference" (default) reproduces the reference's swap,
            where `height_shift_range` moves images left/right and
            `width_shift_range` up/down (tf-keras issue 310); "named" shifts
            along the named axes.
        center: "reference" (default) rotates, shears and zooms about the
            reference's point (row w/2 - 0.5, col h/2 - 0.5, swapped for
            non-square images); "image" uses the true image centre.
        seed: None or an integer (Python or numpy) in [0, 2**32 - 1]
            (numpy's range, as `ImageDataGenerator`'s), for reproducible
            draws.
        bounding_box_format: the format of "bounding_boxes" in dict inputs,
            as in Keras ("xyxy", "rel_xyxy", "xywh", "center_xywh", "yxyx",
            ...); needed only for boxes.
        mask_fill_value: what "segmentation_masks" get outside the image with
            `fill_mode="constant"` (e.g. an "ignore" class); default 0.
        perspective_range: d in [0, 1), beyond the reference: each corner
            moves inward, independently and uniformly, by up to d times half
            the image's width (along x) and height (along y); the image is
            shown inside the quadrilateral of the moved corners. Composed
            into the same matrix: still one resampling.
        distortion_range: k or [k, k2], beyond the reference: radial lens
            distortion of the sampling coordinates (`gpuaug.lens`), k1
            uniform in [-k, k] (k1 > 0 barrel, < 0 pincushion), k2 in
            [-k2, k2]; 3 k + 5 k2 < 1. In the same resampling.

    Call arguments:
        images: (N, H, W, C) or one (H, W, C) image (channels first if so
            configured), any float or integer dtype. Or a dict in Keras 3's
            convention: {"images": (N, H, W, C), "segmentation_masks":
            (N, H, W, C) or (N, H, W), "bounding_boxes": {"boxes": (N, B, 4),
            "labels": (N, B)}, "keypoints": (N, K, 2) (x, y pixels),
            "labels": ...}, all keys but "images" optional: one draw per image
            moves every target with it (see `gpuaug.targets`).
        training: augment when True; otherwise return the input (cast to the
            layer's compute dtype; no random draws, no resampling).

    Output: same shape (and dict structure), images in the layer's compute
    dtype (float32 by default), since the reference generator yields floats
    too; masks keep their dtype, labels pass through.
    """

    def __init__(
        self,
        rotation_range=0,
        width_shift_range=0.0,
        height_shift_range=0.0,
        brightness_range=None,
        shear_range=0.0,
        zoom_range=0.0,
        channel_shift_range=0.0,
        fill_mode="nearest",
        cval=0.0,
        horizontal_flip=False,
        vertical_flip=False,
        interpolation_order=1,
        data_format=None,
        shift_axes="reference",
        center="reference",
        seed=None,
        bounding_box_format=None,
        mask_fill_value=0,
        perspective_range=0.0,
        distortion_range=0.0,
        **kwargs,
    ):
        # The table's arguments, by name (the signature is the table's: tests/test_arguments.py).
        given = {name: value for name, value in locals().items() if name in arguments_lib.BY_NAME}
        super().__init__(**kwargs)
        self._convert_input_args = False  # see __call__
        if bounding_box_format is not None and bounding_box_format not in targets.BOX_FORMATS:
            raise ValueError(f"`bounding_box_format` must be None or one of {targets.BOX_FORMATS}. "
                             f"Received: {bounding_box_format!r}")
        mask_fill_value = config_lib.parse_number("mask_fill_value", mask_fill_value)
        self.bounding_box_format = bounding_box_format
        self.mask_fill_value = mask_fill_value
        self.augmentation = config_lib.AugmentationConfig.from_arguments(
            **{name: given[name] for name in arguments_lib.AUGMENTATION_NAMES})
        self.data_format = config_lib.standardize_data_format(
            data_format, keras.config.image_data_format()
        )
        self.seed = config_lib.parse_seed(seed)
        # Draws differ between replicas of a tf.distribute strategy (see
        # gpuaug.distribute); outside one this is a plain SeedGenerator.
        self.seed_generator = ReplicaSeedGenerator(self.seed, name="seed_generator")
        # Plain Python values (numpy scalars and arrays become numbers and
        # lists), in the forms given: an int shift range and a float one
        # differ, so each keeps its own; flags, the interpolation order, the
        # data format, the seed and the mask fill value in the layer's forms.
        self._arguments = config_lib.to_python({
            **{name: given[name] for name in arguments_lib.NAMES},
            "horizontal_flip": self.augmentation.horizontal_flip,
            "vertical_flip": self.augmentation.vertical_flip,
            "interpolation_order": self.augmentation.interpolation_order,
            "data_format": self.data_format,
            "seed": self.seed,
            "mask_fill_value": mask_fill_value,
        })

    # Shapes --------------------------------------------------------------

    def _check_images(self, images):
        shape = ops.shape(images)
        if len(shape) not in (3, 4):
            layout = "(H, W, C)" if self.data_format == "channels_last" else "(C, H, W)"
            raise ValueError(
                "RandomTransform expects a batch of images of rank 4 or one "
                f"image of rank 3 {layout}; received shape {tuple(shape)}."
            )
        channels = shape[-1] if self.data_format == "channels_last" else shape[-3]
        if (
            self.augmentation.brightness_range is not None
            and isinstance(channels, int)
            and channels not in config_lib.BRIGHTNESS_CHANNELS
        ):
            raise ValueError(
                "`brightness_range` works on images with 1, 3 or 4 channels, "
                f"as in the reference; received {channels} channels."
            )
        return shape

    def _image_size(self, shape):
        """(height, width) of a rank-3 or rank-4 shape in this data format."""
        if self.data_format == "channels_last":
            return shape[-3], shape[-2]
        return shape[-2], shape[-1]

    def compute_output_spec(self, inputs, training=None):
        if not isinstance(inputs, dict):
            return super().compute_output_spec(inputs, training=training)

        def like(tensor, dtype=None):
            return keras.KerasTensor(tensor.shape, dtype=dtype or tensor.dtype)

        outputs = {}
        for key, value in inputs.items():
            if key == targets.IMAGES:
                outputs[key] = like(value, self.compute_dtype)
            elif key == targets.BOUNDING_BOXES:
                outputs[key] = {name: like(part, "float32" if name == "boxes" else None)
                                for name, part in value.items()}
            elif key == targets.KEYPOINTS:
                outputs[key] = like(value, "float32")
            else:  # masks keep their dtype, labels pass through
                outputs[key] = like(value)
        return outputs

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, dict):
            return {key: (dict(value) if isinstance(value, dict) else tuple(value))
                    for key, value in input_shape.items()}
        return tuple(input_shape)

    # Parameters and application ----------------------------------------

    @backend.switches_in_tensorflow_graphs
    def get_random_transformation(self, images, seed=None):
        """Draws one transformation per image of `images` (numpy or tensor).

        Returns a dict with the keys and units of
        `ImageDataGenerator.get_random_transform`: each value a float32
        tensor of shape (N,) (flips boolean), colour keys None when unused.
        For one rank-3 image, N = 1. `seed` overrides the layer's generator.
        """
        shape = self._check_images(images)
        height, width = self._image_size(shape)
        batch = shape[0] if len(shape) == 4 else 1
        return sampling.sample_transformation(
            self.augmentation,
            batch,
            height,
            width,
            seed=current_seed_generator(self) if seed is None else seed,
        )

    @backend.switches_in_tensorflow_graphs
    def transform_images(self, images, transformation):
        """Applies a given transformation dict to `images` (numpy or tensor).

        `transformation` holds scalars or (N,) values with the keys of
        `get_random_transform` (missing keys: no change), e.g. one returned
        by `get_random_transformation` or by the reference, so parameters can
        be replayed on other inputs (a mask with `interpolation_order=0`).
        Geometry and flips are one matrix per image and one resampling.
        """
        return self._transform_images(images, transformation)

    def _transform_images(self, images, transformation, whole_pixels=False):
        """`transform_images`; `whole_pixels`: the dict moves whole pixels
        only (drawn from a configuration that `moves_whole_pixels`), so the
        warp is a copy: one gather of the nearest (= the sampled) pixel."""
        shape = self._check_images(images)
        images = ops.convert_to_tensor(images)
        single = len(shape) == 3
        if single:
            images = images[None]
        if self.data_format == "channels_first":
            images = ops.transpose(images, (0, 2, 3, 1))
        height, width = ops.shape(images)[1], ops.shape(images)[2]
        if any(isinstance(d, int) and d == 0 for d in ops.shape(images)):
            outputs = ops.cast(images, "float32")  # nothing to resample
        else:
            outputs = self._apply(images, transformation, height, width, whole_pixels)
        if self.data_format == "channels_first":
            outputs = ops.transpose(outputs, (0, 3, 1, 2))
        if single:
            outputs = outputs[0]
        return ops.cast(outputs, self.compute_dtype)

    def _apply(self, images, transformation, height, width, whole_pixels=False):
        augmentation = self.augmentation
        outputs = warp.warp_images(
            images,
            self._geometry(transformation, height, width),
            fill_mode=augmentation.fill_mode,
            cval=augmentation.cval,
            # At pixel centres, order 0 (one gather) gives order 1's pixels.
            interpolation_order=0 if whole_pixels else augmentation.interpolation_order,
        )
        intensity = transformation.get("channel_shift_intensity")
        if intensity is not None:
            outputs = colour.channel_shift(outputs, intensity)
        brightness = transformation.get("brightness")
        if brightness is not None:
            outputs = colour.brightness_shift(outputs, brightness)
        return outputs

    # Targets (dict inputs) ------------------------------------------------

    def _geometry(self, transformation, height, width):
        """The transformation dict's `geometry.Geometry`: one matrix per image
        (perspective composed in) and the lens map, if any. Inside a dict
        call, for that call's transformation dict (the same object) and the
        images' size, the one the call computed (`_call_dict`), so that the
        images and every target, through the public per-target methods
        (which subclasses may override), share one geometry."""
        shared = self.__dict__.get("_call_geometry")
        if shared is not None and shared[0] is transformation and _same_size(shared[1], (height, width)):
            return shared[2]
        augmentation = self.augmentation
        return geometry_lib.geometry(transformation, height, width, shift_axes=augmentation.shift_axes,
                                     center=augmentation.center)

    @backend.switches_in_tensorflow_graphs
    def transform_segmentation_masks(self, masks, transformation):
        """Applies a transformation dict's geometry to (N, H, W, C) or
        (N, H, W) masks (channels first if so configured): nearest pixel,
        no colour change, `mask_fill_value` for "constant", dtype kept."""
        targets.check_masks_survive_the_backend(masks)
        masks = ops.convert_to_tensor(masks)
        targets.check_mask_fill_value(self.mask_fill_value, masks.dtype)
        rank = len(ops.shape(masks))
        if rank not in (3, 4):
            raise ValueError(f"`segmentation_masks` must be (N, H, W, C) or (N, H, W); received shape "
                             f"{tuple(ops.shape(masks))}.")
        if rank == 3:
            masks = masks[..., None]
        elif self.data_format == "channels_first":
            masks = ops.transpose(masks, (0, 2, 3, 1))
        geometry = self._geometry(transformation, ops.shape(masks)[1], ops.shape(masks)[2])
        outputs = targets.transform_masks(masks, geometry, self.augmentation.fill_mode, self.mask_fill_value)
        if rank == 3:
            return outputs[..., 0]
        if self.data_format == "channels_first":
            outputs = ops.transpose(outputs, (0, 3, 1, 2))
        return outputs

    def _check_mask_size(self, mask_shape, height, width, image_shape):
        """Masks must have the images' height and width: they are moved in
        the images' pixel units (a smaller mask would be misaligned)."""
        if len(mask_shape) == 3:
            mask_size = tuple(mask_shape[1:3])
        else:
            mask_size = self._image_size(mask_shape) if len(mask_shape) == 4 else None
        known = all(isinstance(d, int) for d in (height, width) + tuple(mask_size or ()))
        if mask_size is not None and known and mask_size != (height, width):
            raise ValueError(f"`segmentation_masks` of shape {tuple(mask_shape)} do not have the height and width of "
                             f"the images, of shape {tuple(image_shape)}: masks must be {height} x {width} pixels.")

    @backend.switches_in_tensorflow_graphs
    def transform_bounding_boxes(self, bounding_boxes, transformation, height, width):
        """Moves {"boxes": (N, B, 4), "labels": (N, B)} in
        `bounding_box_format` with images of height x width pixels."""
        if self.bounding_box_format is None:
            raise ValueError("Inputs with 'bounding_boxes' need the layer's `bounding_box_format`, one of "
                             f"{targets.BOX_FORMATS}.")
        if not isinstance(bounding_boxes, dict) or "boxes" not in bounding_boxes:
            raise ValueError("'bounding_boxes' must be a dict with 'boxes' (N, B, 4) and optionally 'labels'.")
        return targets.transform_bounding_boxes(bounding_boxes, self._geometry(transformation, height, width),
                                                height, width, self.bounding_box_format)

    @backend.switches_in_tensorflow_graphs
    def transform_keypoints(self, keypoints, transformation, height, width):
        """Moves (N, K, 2) keypoints (x, y pixels); those that leave the
        image become (-1, -1) (`targets.KEYPOINT_OUTSIDE`)."""
        return targets.transform_keypoints(keypoints, self._geometry(transformation, height, width), height, width)

    def _call_dict(self, data, training):
        unknown = set(data) - set(targets.DICT_KEYS)
        if targets.IMAGES not in data or unknown:
            optional = ", ".join(repr(key) for key in targets.DICT_KEYS if key != targets.IMAGES)
            raise ValueError(f"A dict input needs {targets.IMAGES!r} and may have {optional}; "
                             f"received keys {sorted(data)}.")
        images = data[targets.IMAGES]
        outputs = dict(data)
        if len(ops.shape(images)) != 4:
            raise ValueError(f"Dict inputs need a batch of images (rank 4); received shape {tuple(ops.shape(images))}.")
        if not training or self.augmentation.is_identity:
            outputs[targets.IMAGES] = ops.cast(images, self.compute_dtype)
            return outputs
        height, width = self._image_size(ops.shape(images))
        masks, boxes, keypoints = targets.SEGMENTATION_MASKS, targets.BOUNDING_BOXES, targets.KEYPOINTS
        if masks in data:
            self._check_mask_size(ops.shape(data[masks]), height, width, ops.shape(images))
        transformation = self.get_random_transformation(images)
        # One geometry per call (matrices, lens and, for boxes and keypoints,
        # the inverse), which `_geometry` gives the images and every target.
        geometry = self._geometry(transformation, height, width)
        if boxes in data or keypoints in data:
            geometry = geometry.with_inverse(height, width)
        self.__dict__["_call_geometry"] = (transformation, (height, width), geometry)  # not a tracked attribute
        try:
            outputs[targets.IMAGES] = self._transform_images(images, transformation,
                                                             self.augmentation.moves_whole_pixels)
            if masks in data:
                outputs[masks] = self.transform_segmentation_masks(data[masks], transformation)
            if boxes in data:
                outputs[boxes] = self.transform_bounding_boxes(data[boxes], transformation, height, width)
            if keypoints in data:
                outputs[keypoints] = self.transform_keypoints(data[keypoints], transformation, height, width)
        finally:
            self.__dict__.pop("_call_geometry", None)  # no tensor of this call kept
        return outputs

    def __call__(self, inputs, *args, **kwargs):
        # Keras would convert host arrays to tensors and cast every float
        # input to the compute dtype (float64 or float16 masks to float32),
        # so the layer converts its inputs itself (`_convert_input_args` is
        # off): masks keep their dtype, and on JAX without 64-bit types masks
        # whose values would change on the way are refused first.
        # In a tf.data pipeline (a TensorFlow graph) on JAX or PyTorch, the
        # call runs Keras' TensorFlow functions, as Keras' own image layers do
        # there, and draws from a TensorFlow seed generator (the mixin).
        if isinstance(inputs, dict) and targets.SEGMENTATION_MASKS in inputs:
            targets.check_masks_survive_the_backend(inputs[targets.SEGMENTATION_MASKS])
        if not backend.needs_tensorflow(inputs):
            inputs = keras.tree.map_structure(backend.as_tensor, inputs)
        return super().__call__(inputs, *args, **kwargs)

    def call(self, images, training=None):
        if isinstance(images, dict):
            return self._call_dict(images, training)
        if not training or self.augmentation.is_identity:
            return ops.cast(images, self.compute_dtype)
        return self._transform_images(images, self.get_random_transformation(images),
                                      self.augmentation.moves_whole_pixels)

    def get_config(self):
        config = super().get_config()
        config.update(self._arguments)
        return config
