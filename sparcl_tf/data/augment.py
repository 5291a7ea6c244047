"""Host-side, batched augmentation drawn from the portable stream (`session.random`).

`crop_flip` is the CIFAR recipe: random crop back to the input size after zero padding (padding
with the value a black pixel has after normalisation, as torchvision pads before normalising),
then a random horizontal flip. The session host applies it to current and replayed batches before
a step, so every engine trains on the same pixels. Per batch, from its stream: for each example i,
output 2i gives the row offset and 2i+1 the column offset (below(., 2 * padding + 1)); with
flips, output 2B + i decides example i's flip (below(., 2) == 1 flips).
"""

import numpy as np

from sparcl_tf.errors import ConfigError
from sparcl_tf.session import random as session_random

AUGMENTATIONS = ("none", "crop_flip", "crop")


def random_crop(images, padding, fill, stream):
    """Per-example random crop of `images` (B, H, W, C) after padding each side by `padding`."""
    batch, height, width = images.shape[:3]
    fill = np.asarray(fill, images.dtype).reshape(1, 1, 1, -1)
    padded = np.pad(images - fill, [(0, 0), (padding, padding), (padding, padding), (0, 0)])
    padded = padded + fill
    offsets = stream.below(np.full((batch, 2), 2 * padding + 1))
    out = np.empty_like(images)
    for i, (row, col) in enumerate(offsets):
        out[i] = padded[i, row:row + height, col:col + width]
    return out


def random_flip(images, stream, start):
    flip = stream.below(np.full(len(images), 2), start=start) == 1
    return np.where(flip[:, None, None, None], images[:, :, ::-1], images)


def make_augment(kind, padding, fill, seed):
    """Returns augment(images, step, batch) for augmentation `kind`; `batch` 0 is the current
    batch of step `step`, 1.. its replay draws."""
    if kind not in AUGMENTATIONS:
        raise ConfigError(f"data.augment={kind!r} is unknown; choose one of {list(AUGMENTATIONS)}")
    if kind != "none" and padding < 0:
        raise ConfigError(f"data.crop_padding must be >= 0, got {padding}")

    def augment(images, step, batch):
        if kind == "none":
            return images
        stream = session_random.Stream(seed, session_random.AUGMENT, step, batch)
        if kind in ("crop", "crop_flip") and padding > 0:
            images = random_crop(images, padding, fill, stream)
        if kind == "crop_flip":
            images = random_flip(images, stream, start=2 * len(images))
        return images

    return augment
