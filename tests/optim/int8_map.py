"""The 8-bit state map in float64, from its definition (independent of the library's bit
operations): the levels of a float format with 3 mantissa bits, shifted down by the
smallest of them so that code 0 is zero, the nearest level of a value, and what a code reads
as (an unsigned code 0 as a quarter of the lowest level).

Signed map (first moments): codes 0..127 for magnitudes, the sign in bit 7; the top code's
level before the shift is 1.0, so the levels are those of ``n = c + 889`` (``889 =
(0x3F800000 >> 20) - 127``). Unsigned map (second moments): codes 0..255, ``n = c + 761``.
A level of ``n`` is ``2^(n // 8 - 127) (1 + (n % 8) / 8)``.
"""

from __future__ import annotations

import torch

SIGNED_OFFSET = 1016 - 127
UNSIGNED_OFFSET = 1016 - 255


def _float_level(n: torch.Tensor) -> torch.Tensor:
    exponent = torch.div(n, 8, rounding_mode="floor") - 127
    return torch.pow(2.0, exponent.double()) * (1.0 + (n % 8).double() / 8.0)


def levels(signed: bool) -> torch.Tensor:
    """The map's levels (relative to a block's absmax), float64, indexed by code magnitude."""
    top, offset = (127, SIGNED_OFFSET) if signed else (255, UNSIGNED_OFFSET)
    n = torch.arange(top + 1, dtype=torch.int64) + offset
    return _float_level(n) - _float_level(torch.tensor(offset))


def read_levels(signed: bool) -> torch.Tensor:
    """What each code magnitude decodes to: :func:`levels`, except that an unsigned code 0
    reads as ``2^-37``, a quarter of the lowest level (the middle of the values that round
    to it), not zero."""
    out = levels(signed)
    if not signed:
        out[0] = 2.0**-37
    return out


def nearest(a: torch.Tensor, signed: bool) -> torch.Tensor:
    """The code magnitude (int64) of the level nearest to each ``a`` in [0, 1] (float64)."""
    lv = levels(signed)
    upper = torch.searchsorted(lv, a.contiguous()).clamp(max=lv.numel() - 1)
    lower = (upper - 1).clamp(min=0)
    return torch.where((lv[upper] - a).abs() < (a - lv[lower]).abs(), upper, lower)


def magnitude_and_sign(codes: torch.Tensor, signed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Code magnitudes (int64) and signs (+-1.0) of stored uint8 codes."""
    c = codes.reshape(-1).to(torch.int64)
    if not signed:
        return c, torch.ones(c.shape, dtype=torch.float64)
    return c % 128, torch.where(c >= 128, -1.0, 1.0).double()


def decode(codes: torch.Tensor, absmax: torch.Tensor, signed: bool) -> torch.Tensor:
    """float64 values of uint8 codes (flat), one ``absmax`` per 256 elements."""
    magnitude, sign = magnitude_and_sign(codes, signed)
    per_element = absmax.double().reshape(-1).repeat_interleave(256)[: magnitude.numel()]
    return read_levels(signed)[magnitude] * sign * per_element
