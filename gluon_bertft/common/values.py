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


def unit_interval(value):
    """A number in [0, 1], both ends included (distillation's ``--alpha``)."""
    x = float(value)
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f'{value}: must be in [0, 1]')
    return x


# training computes in float32: a rate outside its normal range overflows or becomes 0 there
FLOAT32_RANGE = (1.1754944e-38, 3.4028235e+38)
RANGE_TEXT = 'float32, which training computes in, holds 1.2e-38 to 3.4e+38'


def positive_number(value):
    """A finite number > 0 (learning rates, clipping norms) within float32's normal range."""
    x = float(value)
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(f'{value}: must be a finite number > 0')
    if not FLOAT32_RANGE[0] <= x <= FLOAT32_RANGE[1]:
        raise argparse.ArgumentTypeError(f'{value}: out of range ({RANGE_TEXT})')
    return x


# distillation's temperature T (training/distill.kl_div, float32): below, T**2 is not a normal
# float32 and the soft loss becomes 0; above, the soft loss loses its digits (measured:
# relative error 0.5 % at T = 1000, 48 % at 10,000; docs/bad-input.md)
TEMPERATURE_RANGE = (1.1e-19, 1000.0)


def temperature(value):
    """Distillation's ``--temperature``: a finite number in :data:`TEMPERATURE_RANGE`."""
    x = float(value)
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(f'{value}: must be a finite number > 0')
    low, high = TEMPERATURE_RANGE
    if not low <= x <= high:
        raise argparse.ArgumentTypeError(
            f'{value}: out of range ({low:g} to {high:g}: below, T^2 underflows float32 and the '
            'soft loss is 0; above, float32 loses its digits; temperatures of 1 to 20 are usual)')
    return x


def non_negative(value):
    """A finite number >= 0 (weight decay): 0, or within float32's normal range."""
    x = float(value)
    if not (math.isfinite(x) and x >= 0):
        raise argparse.ArgumentTypeError(f'{value}: must be a finite number >= 0')
    if x and not FLOAT32_RANGE[0] <= x <= FLOAT32_RANGE[1]:
        raise argparse.ArgumentTypeError(f'{value}: out of range ({RANGE_TEXT})')
    return x


def seed_number(value):
    """A seed of numpy's and MXNet's generators: 0..2**32 - 1."""
    n = int(value)
    if not 0 <= n < 2 ** 32:
        raise argparse.ArgumentTypeError(f'{value}: must be an integer from 0 to 2**32 - 1')
    return n
