"""The portable random stream of a session: every draw the host side makes, in any language.

SplitMix64 (Steele, Lea, Flood 2014), keyed and counter-based, so a draw depends only on what it
is for, never on how many draws came before; nothing random needs saving in a checkpoint and a
Kotlin or C host reproduces the Python one step for step. All arithmetic is on unsigned 64-bit
integers modulo 2**64.

  mix(z)      = z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB;
                z ^ (z >> 31)
  key(seed, f1, ..., fk): k = seed; for each field f: k = mix(k + GAMMA * (f + 1))
  output n (n = 0, 1, ...) of the stream with key k: mix(k + GAMMA * (n + 1)),
                GAMMA = 0x9E3779B97F4A7C15
  below(u, m) = floor(double(u >> 11) * 2**-53 * m), in IEEE double, left to right: 0 <= . < m
  permutation(m): a = [0 .. m-1]; for i = m-1 down to 1: j = below(output m-1-i, i+1);
                swap a[i], a[j]                              (Fisher-Yates, m - 1 outputs)
  distinct(m, k): a = [0 .. m-1]; for i = 0 .. k-1: j = i + below(output i, m - i);
                swap a[i], a[j]; the first k entries        (partial Fisher-Yates)

The first field of every key names the purpose (the constants below); the rest are the
positions the purpose lists, so two purposes never share a stream.
"""

import numpy as np

GAMMA = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1

# Purposes: the first key field after the run seed.
EPOCH_ORDER = 1   # (task, epoch): the order an epoch visits the task's remaining examples
RESERVOIR = 2     # (): output p decides where the p-th example offered to the buffer goes
REPLAY = 3        # (step, draw): which stored examples a replay draw takes
AUGMENT = 4       # (step, batch): crop offsets and flips; batch 0 current, 1.. replay draws
REMOVAL = 5       # (task, stage): the permutation that settles exact ties in data removal
GROWTH = 6        # (task, update): the seed of a mask update's random growth
PURPOSES = {"epoch_order": EPOCH_ORDER, "reservoir": RESERVOIR, "replay": REPLAY,
            "augment": AUGMENT, "removal": REMOVAL, "growth": GROWTH}

# The task stream is built before a session starts, on the host that has the data set (Python);
# its draws use numpy's generator, keyed (seed, purpose, *fields) with these purposes.
CLASS_ORDER = 7         # (): the shuffled class order
CLASS_TASK_SUBSET = 11  # (task,): the training / test examples a class-incremental task keeps
DOMAIN_TASK_SUBSET = 13  # (task,): the same for a domain-incremental task
PIXEL_PERMUTATION = 17  # (task,): permuted-MNIST's pixel order


def data_rng(seed, purpose, *fields):
    """numpy's generator for one task-stream purpose (the constants above)."""
    return np.random.default_rng([int(seed), purpose, *(int(f) for f in fields)])


GROWTH_SEEDS = 1 << 17  # growth seeds lie in [0, 2**17): the device hash stays inside int32


def mix(z):
    """SplitMix64's finaliser on a Python int or a numpy uint64 array."""
    if isinstance(z, np.ndarray):
        with np.errstate(over="ignore"):
            z = z ^ (z >> np.uint64(30))
            z = z * np.uint64(0xBF58476D1CE4E5B9)
            z = z ^ (z >> np.uint64(27))
            z = z * np.uint64(0x94D049BB133111EB)
            return z ^ (z >> np.uint64(31))
    z &= _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


class Stream:
    """The stream keyed by (seed, purpose, *fields)."""

    def __init__(self, seed, purpose, *fields):
        key = int(seed) & _MASK
        for field in (purpose, *fields):
            key = mix(key + GAMMA * (int(field) + 1))
        self.key = key

    def outputs(self, start, count):
        """Outputs start .. start+count-1 (uint64 array)."""
        n = np.arange(start + 1, start + count + 1, dtype=np.uint64)
        with np.errstate(over="ignore"):
            return mix(np.uint64(self.key) + np.uint64(GAMMA) * n)

    def below(self, bounds, start=0):
        """below(output start+i, bounds[i]) for each i: uniform integers in [0, bounds[i])."""
        bounds = np.asarray(bounds, np.float64)
        u = self.outputs(start, bounds.size).reshape(bounds.shape)
        return np.floor((u >> np.uint64(11)).astype(np.float64) * 2.0 ** -53 * bounds).astype(
            np.int64)

    def permutation(self, m):
        a = np.arange(m, dtype=np.int64)
        if m < 2:
            return a
        j = self.below(np.arange(m, 1, -1)).tolist()  # bounds i+1 for i = m-1 .. 1
        for step, i in enumerate(range(m - 1, 0, -1)):
            k = j[step]
            a[i], a[k] = a[k], a[i]
        return a

    def distinct(self, m, k):
        """k distinct integers of [0, m), in draw order."""
        k = min(k, m)
        a = np.arange(m, dtype=np.int64)
        j = (np.arange(k) + self.below(m - np.arange(k))).tolist()
        for i in range(k):
            a[i], a[j[i]] = a[j[i]], a[i]
        return a[:k]


def growth_seed(seed, task_index, update_index):
    """The seed a mask update's random growth uses (device hash input, int32-safe)."""
    return int(Stream(seed, GROWTH, task_index, update_index).below([GROWTH_SEEDS])[0])
