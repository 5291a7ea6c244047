"""In-graph, batched augmentation driven by a seeded `tf.random.Generator`.

`crop_flip` is the CIFAR recipe: random crop back to the input size after zero padding (padding
with the value a black pixel has after normalisation, as torchvision pads before normalising),
then a random horizontal flip. It runs inside the train step on current and replayed batches.
"""

import tensorflow as tf

from sparcl_tf.errors import ConfigError

AUGMENTATIONS = ("none", "crop_flip", "crop")


def random_crop(images, padding, fill, generator):
    """Per-example random crop of `images` (B, H, W, C) after padding each side by `padding`."""
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    fill = tf.cast(tf.reshape(fill, [1, 1, 1, -1]), images.dtype)
    padded = tf.pad(images - fill, [[0, 0], [padding, padding], [padding, padding], [0, 0]]) + fill
    offsets = generator.uniform([batch, 2], 0, 2 * padding + 1, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(height)[None, :]
    cols = offsets[:, 1:] + tf.range(width)[None, :]
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(cropped, cols, axis=2, batch_dims=1)


def random_flip(images, generator):
    flip = generator.uniform([tf.shape(images)[0], 1, 1, 1]) < 0.5
    return tf.where(flip, tf.reverse(images, axis=[2]), images)


def make_augment(kind, padding, fill, generator):
    """Returns images -> augmented images for augmentation `kind`."""
    if kind not in AUGMENTATIONS:
        raise ConfigError(f"data.augment={kind!r} is unknown; choose one of {list(AUGMENTATIONS)}")
    if kind != "none" and padding < 0:
        raise ConfigError(f"data.crop_padding must be >= 0, got {padding}")

    def augment(images):
        if kind in ("crop", "crop_flip") and padding > 0:
            images = random_crop(images, padding, fill, generator)
        if kind == "crop_flip":
            images = random_flip(images, generator)
        return images

    return augment
