"""Every random draw in perceive-ir comes from here.

A `numpy.random.Generator` is made from a `SeedSequence` of integers: the
dataset seed, a stable hash of the sample key, and the component. Python's
`hash()` is salted per process, so strings go through blake2b instead; the
result is the same in every process, on every worker and machine.
"""

from __future__ import annotations

import hashlib

import numpy as np

from degradations.errors import UserError

Entropy = int | str


def stable_hash(value: Entropy) -> int:
    """A 64-bit integer for `value` that is the same in every process."""
    if isinstance(value, (int, np.integer)):
        if value < 0:
            raise UserError(f"seeds must be non-negative integers, got {value}")
        return int(value)
    if isinstance(value, str):
        return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "little")
    raise UserError(f"seed entropy must be an int or a str, got {type(value).__name__}")


def seed_sequence(*entropy: Entropy) -> np.random.SeedSequence:
    return np.random.SeedSequence([stable_hash(e) for e in entropy])


def rng(*entropy: Entropy) -> np.random.Generator:
    """A Generator for (dataset seed, sample key, component, ...)."""
    return np.random.Generator(np.random.PCG64(seed_sequence(*entropy)))


def derive_seed(*entropy: Entropy) -> int:
    """A single 63-bit seed for (dataset seed, sample key, component, ...).

    Use it where an API takes one integer seed, such as `degrade(..., seed=)`.
    """
    return int(seed_sequence(*entropy).generate_state(2, np.uint32).view(np.uint64)[0] >> np.uint64(1))
