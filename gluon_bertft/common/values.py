"""Option values checked at parse time: argparse ``type=`` callables shared by every command."""
import argparse
import math


def positive(value):
    n = int(value)
    if n <= 0:
        raise argparse.ArgumentTypeError(f'{value}: must be a positive integer')
    return n


def fraction(value):
    x = float(value)
    if not 0 <= x < 1:
        raise argparse.ArgumentTypeError(f'{value}: must be in [0, 1)')
    return x


def positive_number(value):
    """A finite number > 0 (learning rates, clipping norms)."""
    x = float(value)
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(f'{value}: must be a finite number > 0')
    return x


def non_negative(value):
    """A finite number >= 0 (weight decay)."""
    x = float(value)
    if not (math.isfinite(x) and x >= 0):
        raise argparse.ArgumentTypeError(f'{value}: must be a finite number >= 0')
    return x


def seed_number(value):
    """A seed of numpy's and MXNet's generators: 0..2**32 - 1."""
    n = int(value)
    if not 0 <= n < 2 ** 32:
        raise argparse.ArgumentTypeError(f'{value}: must be an integer from 0 to 2**32 - 1')
    return n
