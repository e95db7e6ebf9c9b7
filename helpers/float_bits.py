"""Floating-point number formats: bit layouts, encode/decode, and rounding a tensor to a format.

Taught in 01_float_bits. A binary floating-point format with ``E`` exponent bits and ``M``
mantissa (fraction) bits stores a sign ``s``, a biased exponent ``e`` and a fraction ``m``:

* normal (``0 < e < all ones``): ``x = (-1)^s · (1 + m / 2^M) · 2^(e - bias)``, ``bias = 2^(E-1) - 1``;
* subnormal (``e = 0``): ``x = (-1)^s · (m / 2^M) · 2^(1 - bias)`` (``m = 0`` gives ±0);
* ``e`` all ones: ±inf (``m = 0``) or NaN (IEEE-like formats).

``fp8_e4m3`` is the OCP / ``torch.float8_e4m3fn`` variant: no infinities, the all-ones exponent
holds normal numbers, and only ``S.1111.111`` is NaN, so its largest value is ``1.110b · 2^8 = 448``.

Rounding follows PyTorch's casts bit for bit (checked in ``tests/test_float_bits.py``): the input is
first cast to float32, then rounded to nearest with ties to even; overflow gives ±inf in fp16,
bf16 and fp8_e5m2, while ``.to(torch.float8_e4m3fn)`` saturates to ±448 (even ±inf becomes ±448;
NaN stays NaN). That saturation is what the pinned torch 2.14.1 does on CPU (all three CPU code paths);
earlier releases' CPU cast gave NaN on finite overflow (changed in pytorch/pytorch#178817), and
other casts (``float8_e4m3fnuz``, ml_dtypes) give NaN.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch

from helpers._validate import check_choice, check_float_tensor, check_int, check_tensor
from helpers.exercises import grade

__all__ = [
    "FORMATS",
    "FloatFormat",
    "FloatBits",
    "format_info",
    "format_table",
    "round_to_format",
    "encode",
    "decode",
    "float_bits",
    "value_from_bits",
    "classify",
    "ulp",
    "float_bits_view",
    "ulp_view",
    "magnitudes_view",
    "check_decode",
    "check_first_gap",
    "check_halving_bit",
]

#: The format names every function accepts, narrowest exponent last.
FORMATS = ("fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2")
CLASSES = ("zero", "subnormal", "normal", "inf", "nan")


@dataclass(frozen=True)
class FloatFormat:
    """One row of the format table; every number is derived from ``exp_bits`` and ``man_bits``."""

    name: str
    bits: int
    exp_bits: int
    man_bits: int
    bias: int
    max: float
    smallest_normal: float
    smallest_subnormal: float
    eps: float
    has_inf: bool
    torch_dtype: torch.dtype

    @property
    def emin(self) -> int:
        """Unbiased exponent of the smallest normal number, ``1 - bias``."""
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Unbiased exponent of the largest finite number."""
        return (2**self.exp_bits - 1 if not self.has_inf else 2**self.exp_bits - 2) - self.bias


def _build(name: str, exp_bits: int, man_bits: int, has_inf: bool, dtype: torch.dtype) -> FloatFormat:
    bias = 2 ** (exp_bits - 1) - 1
    if has_inf:  # all-ones exponent reserved for inf/NaN: largest is 1.11..1 x 2^(2^E - 2 - bias)
        emax = 2**exp_bits - 2 - bias
        max_value = (2 - 2.0**-man_bits) * 2.0**emax
    else:  # e4m3fn: all-ones exponent is normal, only mantissa all ones is NaN -> 1.11..10 x 2^emax
        emax = 2**exp_bits - 1 - bias
        max_value = (2 - 2.0 ** (1 - man_bits)) * 2.0**emax
    return FloatFormat(
        name=name,
        bits=1 + exp_bits + man_bits,
        exp_bits=exp_bits,
        man_bits=man_bits,
        bias=bias,
        max=max_value,
        smallest_normal=2.0 ** (1 - bias),
        smallest_subnormal=2.0 ** (1 - bias - man_bits),
        eps=2.0**-man_bits,
        has_inf=has_inf,
        torch_dtype=dtype,
    )


_INFO = {
    "fp32": _build("fp32", 8, 23, True, torch.float32),
    "fp16": _build("fp16", 5, 10, True, torch.float16),
    "bf16": _build("bf16", 8, 7, True, torch.bfloat16),
    "fp8_e4m3": _build("fp8_e4m3", 4, 3, False, torch.float8_e4m3fn),
    "fp8_e5m2": _build("fp8_e5m2", 5, 2, True, torch.float8_e5m2),
}


def _check_fmt(fmt: object, name: str = "fmt") -> FloatFormat:
    if not isinstance(fmt, str):
        raise TypeError(f"{name} must be a format name (str), one of {', '.join(FORMATS)}; got {type(fmt).__name__}")
    check_choice(fmt, name, FORMATS)
    return _INFO[fmt]


def format_info(fmt: str) -> FloatFormat:
    """The layout and range of format ``fmt``: bits, exponent/mantissa bits, bias, max, smallest normal/subnormal, eps.

    ``eps = 2^-M`` (gap between 1 and the next number), ``smallest_normal = 2^(1-bias)``,
    ``smallest_subnormal = 2^(1-bias-M)``. Taught in 01_float_bits.
    """
    return _check_fmt(fmt)


def format_table() -> list[FloatFormat]:
    """``format_info`` of every format in ``FORMATS``, in that order. Taught in 01_float_bits."""
    return [_INFO[name] for name in FORMATS]


def _as_float32(x: torch.Tensor, name: str) -> torch.Tensor:
    check_float_tensor(x, name, allow_nonfinite=True)
    return x.detach().to(torch.float32)


def _unbiased_exponent(a: torch.Tensor) -> torch.Tensor:
    """floor(log2(a)) for a > 0 (float64 input), exactly, via frexp (a = m · 2^k, m in [0.5, 1))."""
    _, k = torch.frexp(a)
    return k.to(torch.int64) - 1


def round_to_format(x: torch.Tensor, fmt: str) -> torch.Tensor:
    """``x`` rounded to the nearest value of ``fmt`` (ties to even), as a float32 tensor; matches ``x.to(dtype)``.

    For ``|x|`` with exponent ``k = floor(log2|x|)`` the spacing is ``2^(max(k, emin) - M)``, so
    ``x_hat = round_half_even(x / spacing) · spacing``; results beyond ``max`` become ±inf, or ±max
    for fp8_e4m3 (torch's cast saturates). Inputs are cast to float32 first, as torch's casts do.
    Taught in 01_float_bits.
    """
    info = _check_fmt(fmt)
    x32 = _as_float32(x, "x")
    if info.name == "fp32":
        return x32.clone()
    x_hat = _round_unbounded(x32, info)
    overflow = x_hat.abs() > info.max  # also true for +-inf; NaN stays NaN
    limit = math.inf if info.has_inf else info.max  # float8_e4m3fn: torch's cast saturates
    return torch.where(overflow, torch.copysign(torch.full_like(x_hat, limit), x32), x_hat)


def _round_unbounded(x32: torch.Tensor, info: FloatFormat) -> torch.Tensor:
    """``x32`` rounded (ties to even) to ``info``'s spacing with no upper exponent limit: may exceed ``info.max``."""
    # k = floor(log2|x|) read from the float32 exponent field (fp32 subnormals get -127; clamped to emin)
    k = ((x32.view(torch.int32) >> 23) & 0xFF) - 127
    spacing = _pow2_float32(k.clamp_min(info.emin) - info.man_bits)
    return torch.round(x32 / spacing) * spacing  # exact scaling by a power of two; round is half-to-even


def _pow2_float32(n: torch.Tensor) -> torch.Tensor:
    """Exact ``2.0 ** n`` as float32 for integer ``n`` in -149..127 (subnormal powers included), built from bits."""
    normal_bits = (n + 127).clamp(1, 254) << 23
    subnormal_bits = torch.ones_like(n) << (n + 149).clamp(0, 22)
    return torch.where(n >= -126, normal_bits, subnormal_bits).to(torch.int32).view(torch.float32)


def classify(x: torch.Tensor, fmt: str) -> list[str]:
    """Class of each element of ``x`` after rounding to ``fmt``: "zero", "subnormal", "normal", "inf" or "nan".

    Returns a flat list (one string per element, in ``x.flatten()`` order). Taught in 01_float_bits.
    """
    codes = _class_codes(round_to_format(x, fmt), _INFO[fmt]).flatten()
    return [CLASSES[int(c)] for c in codes]


def _class_codes(r: torch.Tensor, info: FloatFormat) -> torch.Tensor:
    a = r.abs()
    code = torch.full(r.shape, 2, dtype=torch.int64)
    code[a < info.smallest_normal] = 1
    code[a == 0] = 0
    code[torch.isinf(a)] = 3
    code[torch.isnan(a)] = 4
    return code


def encode(x: torch.Tensor, fmt: str) -> torch.Tensor:
    """The bit patterns (as int64 codes in ``0..2^bits - 1``) of ``x`` rounded to ``fmt``.

    ``code = s · 2^(bits-1) + e · 2^M + m``. NaN is encoded as torch does for the float8 types
    (exponent and mantissa all ones) and as the quiet NaN ``0 1..1 10..0`` for the wider formats.
    Taught in 01_float_bits.
    """
    info = _check_fmt(fmt)
    r = round_to_format(x, fmt).to(torch.float64)
    M, E = info.man_bits, info.exp_bits
    sign = torch.signbit(r).to(torch.int64)
    a = r.abs()
    finite_pos = torch.isfinite(a) & (a > 0)
    safe = torch.where(finite_pos, a, torch.ones_like(a))
    k = _unbiased_exponent(safe)
    normal = finite_pos & (k >= info.emin)
    e = torch.where(normal, k + info.bias, torch.zeros_like(k))
    frac_normal = torch.ldexp(safe, -k) - 1.0  # in [0, 1)
    frac_sub = torch.ldexp(safe, torch.tensor(M - info.emin))  # m for subnormals, exact integer
    m = torch.where(normal, torch.round(torch.ldexp(frac_normal, torch.tensor(M))), frac_sub).to(torch.int64)
    m = torch.where(finite_pos, m, torch.zeros_like(m))
    all_ones = 2**E - 1
    e = torch.where(torch.isinf(a), torch.full_like(e, all_ones), e)
    nan = torch.isnan(a)
    nan_m = 2**M - 1 if info.bits == 8 else 2 ** (M - 1)
    e = torch.where(nan, torch.full_like(e, all_ones), e)
    m = torch.where(nan, torch.full_like(m, nan_m), m)
    sign = torch.where(nan, torch.zeros_like(sign), sign)
    return (sign << (info.bits - 1)) | (e << M) | m


def decode(codes: torch.Tensor, fmt: str) -> torch.Tensor:
    """The float32 values of integer bit patterns ``codes`` (each in ``0..2^bits - 1``) in format ``fmt``.

    Inverse of ``encode``: normal ``(-1)^s (1 + m/2^M) 2^(e-bias)``, subnormal ``(-1)^s (m/2^M) 2^(1-bias)``.
    Taught in 01_float_bits.
    """
    info = _check_fmt(fmt)
    check_tensor(codes, "codes")
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise TypeError(f"codes must be an integer tensor, got dtype {codes.dtype}")
    c = codes.to(torch.int64)
    hi = 2**info.bits - 1
    if bool((c < 0).any()) or bool((c > hi).any()):
        raise ValueError(f"codes must be in 0..{hi} for {info.name} ({info.bits} bits)")
    M, E = info.man_bits, info.exp_bits
    s = c >> (info.bits - 1)
    e = (c >> M) & (2**E - 1)
    m = (c & (2**M - 1)).to(torch.float64)
    sig = torch.where(e > 0, 1.0 + m / 2**M, m / 2**M)
    k = torch.where(e > 0, e - info.bias, torch.full_like(e, info.emin))
    v = torch.ldexp(sig, k)
    all_ones = e == 2**E - 1
    if info.has_inf:
        v = torch.where(all_ones & (m == 0), torch.full_like(v, math.inf), v)
        v = torch.where(all_ones & (m != 0), torch.full_like(v, math.nan), v)
    else:
        v = torch.where(all_ones & (m == 2**M - 1), torch.full_like(v, math.nan), v)
    v = torch.where(s == 1, -v, v)
    return v.to(torch.float32)


@dataclass(frozen=True)
class FloatBits:
    """The bits of one number in one format, and what they mean."""

    fmt: str
    x: float
    value: float
    sign: str
    exponent: str
    mantissa: str
    biased_exponent: int
    unbiased_exponent: int | None
    kind: str
    code: int

    @property
    def bits(self) -> str:
        """All bits as one string, sign first."""
        return self.sign + self.exponent + self.mantissa

    @property
    def error(self) -> float:
        """Rounding error ``err = value - x`` (NaN when either is not finite)."""
        if not (math.isfinite(self.value) and math.isfinite(self.x)):
            return math.nan
        return self.value - self.x

    @property
    def fields(self) -> tuple[str, ...]:
        """The field each bit belongs to, sign first: ``"sign"``, ``"exponent"`` or ``"mantissa"``."""
        return ("sign",) + ("exponent",) * len(self.exponent) + ("mantissa",) * len(self.mantissa)

    @property
    def decoding(self) -> str:
        """The value as the format's formula, e.g. ``+(1 + 2752512/2^23) x 2^(133 - 127) = 85.125``."""
        info = _INFO[self.fmt]
        s = "-" if self.sign == "1" else "+"
        if self.kind == "normal":
            frac = int(self.mantissa, 2)
            return (
                f"{s}(1 + {frac}/2^{info.man_bits}) x 2^({self.biased_exponent} - {info.bias}) = "
                f"{_fmt_number(self.value)}"
            )
        if self.kind == "subnormal":
            frac = int(self.mantissa, 2)
            return f"{s}({frac}/2^{info.man_bits}) x 2^({info.emin}) = {_fmt_number(self.value)}  (subnormal)"
        if self.kind == "zero":
            return f"{s}0 (zero)"
        return f"{s}inf" if self.kind == "inf" else "NaN"

    def __str__(self) -> str:
        return f"{self.sign} {self.exponent} {self.mantissa}"


def _fmt_number(v: float) -> str:
    """``v`` with up to 10 significant digits; ``NaN``, ``inf`` and ``-inf`` spelled out."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "-inf" if v < 0 else "inf"
    return f"{v:.10g}"


def _record(code: int, x: float, info: FloatFormat) -> FloatBits:
    E = info.exp_bits
    bits = format(code, f"0{info.bits}b")
    value = float(decode(torch.tensor([code]), info.name)[0])
    kind = CLASSES[int(_class_codes(torch.tensor([value]), info)[0])]
    e = int(bits[1 : 1 + E], 2)
    unbiased = {"normal": e - info.bias, "subnormal": info.emin}.get(kind)
    return FloatBits(
        fmt=info.name,
        x=x,
        value=value,
        sign=bits[0],
        exponent=bits[1 : 1 + E],
        mantissa=bits[1 + E :],
        biased_exponent=e,
        unbiased_exponent=unbiased,
        kind=kind,
        code=code,
    )


def _as_python_float(value: int | float) -> float:
    """``float(value)``; an int too large for a float64 is rejected by name instead of an OverflowError."""
    try:
        return float(value)
    except OverflowError:
        raise ValueError(
            f"value must be a number a float64 can hold (|value| <= {sys.float_info.max:.4g}); an int of "
            f"{value.bit_length()} bits is not"
        ) from None


def float_bits(value: float | torch.Tensor, fmt: str) -> FloatBits:
    """Sign, exponent and mantissa bit strings of ``value`` rounded to ``fmt``, with its class and stored value.

    ``value`` may be a Python number (inf and NaN allowed) or a one-element float tensor; it is
    cast to float32 and then rounded (ties to even), exactly as ``torch.tensor(value).to(dtype)``.
    ``unbiased_exponent`` is ``e - bias`` for normals, ``1 - bias`` for subnormals, ``None`` otherwise.
    Taught in 01_float_bits.
    """
    info = _check_fmt(fmt)
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"value must be a single number, got a tensor of shape {tuple(value.shape)}")
        check_float_tensor(value, "value", allow_nonfinite=True)
        x = float(value.detach().to(torch.float64).reshape(()))
    else:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"value must be a real number or a one-element float tensor, got {type(value).__name__}")
        x = _as_python_float(value)
    code = int(encode(torch.tensor([x], dtype=torch.float64), fmt)[0])
    return _record(code, x, info)


def value_from_bits(bits: str | int, fmt: str) -> FloatBits:
    """The number whose bit pattern in ``fmt`` is ``bits`` (a '0'/'1' string, spaces and '_' allowed, or an int code).

    Returns the same record as ``float_bits`` (``.value`` is the decoded number). Taught in 01_float_bits.
    """
    info = _check_fmt(fmt)
    if isinstance(bits, str):
        digits = bits.replace(" ", "").replace("_", "")
        if not digits or set(digits) - {"0", "1"}:
            raise ValueError(f"bits must contain only '0' and '1' (spaces and '_' allowed), got {bits!r}")
        if len(digits) != info.bits:
            raise ValueError(f"bits must have exactly {info.bits} binary digits for {info.name}, got {len(digits)}")
        code = int(digits, 2)
    elif isinstance(bits, int) and not isinstance(bits, bool):
        if not 0 <= bits < 2**info.bits:
            raise ValueError(f"bits must be an integer in 0..{2**info.bits - 1} for {info.name}, got {bits}")
        code = bits
    else:
        raise TypeError(f"bits must be a str of '0'/'1' or an int, got {type(bits).__name__}")
    rec = _record(code, math.nan, info)
    return FloatBits(**{**rec.__dict__, "x": rec.value})


def ulp(x: torch.Tensor, fmt: str) -> torch.Tensor:
    """Spacing between adjacent values of ``fmt`` at each ``x``: ``2^(max(floor(log2|x_hat|), emin) - M)`` (float64).

    ``x`` is first rounded to ``fmt``; zeros and subnormals get the subnormal spacing. Values outside the
    format's range give NaN: inf/NaN, and every ``x`` that rounds past ``max`` (``|x| >= max + ulp(max)/2``),
    whether the cast then overflows to inf or, as fp8_e4m3's saturates, to ±max (ulp(1000) in fp8_e4m3
    is NaN, not the gap at 448). Relative spacing ``ulp / |x|`` is at most ``eps`` for normals.
    Taught in 01_float_bits.
    """
    info = _check_fmt(fmt)
    x32 = _as_float32(x, "x")
    r = round_to_format(x32, fmt).to(torch.float64).abs()
    r = torch.where(_round_unbounded(x32, info).abs() > info.max, torch.full_like(r, math.inf), r)
    safe = torch.where(torch.isfinite(r) & (r > 0), r, torch.ones_like(r))
    k = _unbiased_exponent(safe).clamp_min(info.emin)
    k = torch.where(r > 0, k, torch.full_like(k, info.emin))
    out = torch.ldexp(torch.ones_like(safe), k - info.man_bits)
    return torch.where(torch.isfinite(r), out, torch.full_like(out, math.nan))


# --------------------------------------------------------------------------------------------
# what the lesson's pictures show (helpers.plotting.float_bits draws these dicts)
# --------------------------------------------------------------------------------------------


def _neighbours(rec: FloatBits) -> tuple[float, float, bool] | None:
    """``(lower, upper, outer_exists)``: the representable values just below and above ``rec.value``.

    None for inf/NaN. At ±max the missing outer neighbour is replaced by one more gap and
    ``outer_exists`` is False (it is then not a real value and is drawn without a tick).
    """
    if not math.isfinite(rec.value):
        return None
    info = _INFO[rec.fmt]
    mag = rec.code & (2 ** (info.bits - 1) - 1)
    smaller = float(decode(torch.tensor([mag - 1]), rec.fmt)[0]) if mag > 0 else -info.smallest_subnormal
    larger = float(decode(torch.tensor([mag + 1]), rec.fmt)[0])
    exists = math.isfinite(larger)
    if not exists:
        larger = abs(rec.value) + (abs(rec.value) - smaller)
    if rec.sign == "0":
        return smaller, larger, exists
    return -larger, -smaller, exists


def float_bits_view(value: float, fmt: str, bits: str = "") -> dict:
    """What the bit explorer shows for ``value`` in ``fmt``, or for the pattern ``bits`` when it has the format's length.

    Returns a dict: ``fmt``; ``x`` (the typed value); ``rec`` (the ``FloatBits`` shown: the pattern
    ``bits`` when it is valid, else ``value`` rounded to ``fmt``); ``bits`` (``rec.bits``);
    ``typed_bits`` (the pattern of the rounded ``value``); ``fields`` (field of each bit);
    ``note`` (why ``bits`` was used or ignored); ``err = x_hat - x`` and ``rel = |err| / |x|`` (NaN
    when undefined); ``neighbours`` (``(lower, upper, outer_exists)`` around ``x_hat``, None for
    inf/NaN); ``title`` and ``readout`` (text). Drawn by ``helpers.plotting.float_bits.plot_float_bits``.
    Taught in 01_float_bits.
    """
    info = _check_fmt(fmt)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"value must be a real number, got {type(value).__name__}")
    if not isinstance(bits, str):
        raise TypeError(f"bits must be a str of '0'/'1', got {type(bits).__name__}")
    value = _as_python_float(value)
    typed = float_bits(value, fmt)
    digits = bits.replace(" ", "").replace("_", "")
    note = ""
    if digits and len(digits) == info.bits and not set(digits) - {"0", "1"}:
        rec = value_from_bits(digits, fmt)
        if rec.code != typed.code:
            note = "  (bits flipped by hand)"
    else:
        rec = typed
        if digits:
            note = f"  (ignored bits {bits!r}: need {info.bits} binary digits)"
    err = rec.value - value if math.isfinite(rec.value) and math.isfinite(value) else math.nan
    rel = abs(err) / abs(value) if value != 0 and math.isfinite(err) else math.nan
    readout = (
        f"{fmt} bits: {rec.sign} {rec.exponent} {rec.mantissa}  ({rec.kind}){note}\n"
        f"x = {_fmt_number(value)}   x_hat = {_fmt_number(rec.value)}   "
        f"err = x_hat - x = {_fmt_number(err)}   |err|/|x| = {rel:.3g}"
    )
    return {
        "fmt": fmt,
        "x": value,
        "rec": rec,
        "bits": rec.bits,
        "typed_bits": typed.bits,
        "fields": rec.fields,
        "note": note,
        "err": err,
        "rel": rel,
        "neighbours": _neighbours(rec) if math.isfinite(value) else None,
        "title": f"{fmt}: {rec.decoding}",
        "x_label": _fmt_number(value),
        "x_hat_label": _fmt_number(rec.value),
        "readout": readout,
    }


def _check_fmts(fmts: object) -> tuple[str, ...]:
    if isinstance(fmts, str) or not isinstance(fmts, (tuple, list)) or not fmts:
        raise ValueError("fmts must be a non-empty list of format names")
    for f in fmts:
        check_choice(f, "fmts", FORMATS)
    return tuple(fmts)


def ulp_view(
    fmts: tuple[str, ...] | list[str] = FORMATS,
    xlim: tuple[float, float] = (1e-9, 1e6),
    points: int = 1500,
) -> dict:
    """``ulp(x)`` over ``points`` log-spaced magnitudes in ``xlim`` for each format, up to the format's max.

    Returns ``{"xlim": (lo, hi), "curves": {fmt: (x, ulp)}}`` with float64 tensors: ``x`` runs from the
    format's smallest subnormal (or ``lo``) to its max (or ``hi``); ``ulp`` is the gap to the next value
    (constant within a binade, doubling at each power of two, flat in the subnormal range).
    Drawn by ``helpers.plotting.float_bits.plot_ulp_spacing``. Taught in 01_float_bits.
    """
    fmts = _check_fmts(fmts)
    if not (isinstance(xlim, (tuple, list)) and len(xlim) == 2 and 0 < xlim[0] < xlim[1]):
        raise ValueError(f"xlim must be a pair (lo, hi) with 0 < lo < hi, got {xlim!r}")
    points = check_int(points, "points", lo=2, hi=1_000_000)
    grid = torch.logspace(math.log10(xlim[0]), math.log10(xlim[1]), points, dtype=torch.float64)
    curves = {}
    for f in fmts:
        info = _INFO[f]
        x = grid[(grid >= info.smallest_subnormal) & (grid <= info.max)].to(torch.float32)
        curves[f] = (x.to(torch.float64), ulp(x, f))
    return {"xlim": (float(xlim[0]), float(xlim[1])), "curves": curves}


def magnitudes_view(x: torch.Tensor, fmts: tuple[str, ...] | list[str] = FORMATS, *, bins: int = 79) -> dict:
    """A histogram of ``log10|x|`` (nonzero entries) and each format's range limits, on one log10 axis.

    Returns ``{"edges", "counts", "lo", "hi", "limits"}``: ``bins + 1`` edges and ``bins`` counts over
    ``[lo, hi]`` (wide enough for the data and the narrowest formats' limits), and
    ``limits[fmt] = {"smallest subnormal": v, "smallest normal": v, "max": v}``. Shows which values of
    a real tensor would underflow to zero, become subnormal or overflow in each format.
    Drawn by ``helpers.plotting.float_bits.plot_magnitudes_vs_range``. Taught in 01_float_bits.
    """
    check_float_tensor(x, "x")
    fmts = _check_fmts(fmts)
    bins = check_int(bins, "bins", lo=1, hi=10_000)
    a = x.detach().abs().flatten().to(torch.float64)
    a = a[a > 0]
    if a.numel() == 0:
        raise ValueError("x must have at least one nonzero value")
    logs = torch.log10(a)
    narrow = [f for f in fmts if f != "fp32"] or list(fmts)
    lo = min(float(logs.min()), math.log10(min(_INFO[f].smallest_subnormal for f in narrow)))
    lo = max(lo, float(logs.min()) - 2)
    hi = max(float(logs.max()), math.log10(min(_INFO[f].max for f in fmts))) + 0.5
    edges = torch.linspace(lo, hi, bins + 1)
    counts = torch.histc(logs, bins=bins, min=lo, max=hi)
    limits = {
        f: {
            "smallest subnormal": _INFO[f].smallest_subnormal,
            "smallest normal": _INFO[f].smallest_normal,
            "max": _INFO[f].max,
        }
        for f in fmts
    }
    return {"edges": edges, "counts": counts, "lo": lo, "hi": hi, "limits": limits}


# --------------------------------------------------------------------------------------------
# the lesson's exercises: checkers (answers computed from torch's own casts, never from a solution)
# --------------------------------------------------------------------------------------------

#: The formats ``check_decode`` sweeps: IEEE-754-style layouts (all-ones exponent = inf/NaN).
DECODE_FORMATS = ("fp8_e5m2", "fp16", "bf16")

_INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32}


def _torch_values_of_codes(fmt: str) -> torch.Tensor:
    """Every bit pattern of ``fmt`` (code order) reinterpreted by torch itself as ``fmt``'s dtype, in float64."""
    info = _INFO[fmt]
    codes = torch.arange(2**info.bits, dtype=torch.int64)
    nbytes = info.bits // 8
    raw = codes.to(torch.int32) if nbytes == 4 else codes
    if nbytes == 2:
        raw = torch.where(codes >= 2**15, codes - 2**16, codes)
    return raw.to(_INT_VIEW[nbytes]).view(info.torch_dtype).to(torch.float64)


def _pattern(code: int, info: FloatFormat) -> str:
    bits = format(code, f"0{info.bits}b")
    return f"{bits[0]} {bits[1 : 1 + info.exp_bits]} {bits[1 + info.exp_bits :]}"


def check_decode(fn, *, quiet: bool = False) -> bool:
    """Grade ``fn(bits, exp_bits, man_bits) -> float`` on every bit pattern of fp8_e5m2, fp16 and bf16.

    ``bits`` is the pattern as a string of '0'/'1' (sign first, no spaces). The expected value of
    each pattern is torch's own: the code reinterpreted (``Tensor.view``) as ``torch.float8_e5m2``,
    ``torch.float16`` or ``torch.bfloat16``. Labelled cases come first, one per classic mistake:
    a normal number (wrong bias ``2^(E-1)`` instead of ``2^(E-1) - 1``), a negative one (sign
    ignored), the smallest and largest subnormal (hidden 1 kept, or exponent ``-bias`` instead of
    ``1 - bias``), -0, ±inf and NaN (all-ones exponent decoded as a normal number). Then every
    pattern (131,328 in all). Prints one line; returns whether all agree. Taught in 01_float_bits.
    """
    hints = {}
    targeted = []
    sweep = []
    for fmt in DECODE_FORMATS:
        info = _INFO[fmt]
        values = _torch_values_of_codes(fmt).tolist()
        top = 2 ** (info.bits - 1)
        ones = (2**info.exp_bits - 1) << info.man_bits  # exponent all ones, mantissa 0
        picks = {
            "normal": info.bias << info.man_bits,  # 1.0: e = bias
            "normal above 1": (info.bias + 2) << info.man_bits | 1,  # (1 + 2^-M) * 4
            "negative": top | (info.bias << info.man_bits) | 2 ** (info.man_bits - 1),  # -1.5
            "smallest subnormal": 1,
            "largest subnormal": 2**info.man_bits - 1,
            "negative zero": top,
            "inf": ones,
            "-inf": top | ones,
            "nan": ones | 1,
        }
        for kind, code in picks.items():
            label = f"{kind}: {fmt} {_pattern(code, info)}"
            targeted.append(((format(code, f"0{info.bits}b"), info.exp_bits, info.man_bits), values[code], label))
            hints[label] = _DECODE_HINTS[kind]
        sweep += [
            ((format(c, f"0{info.bits}b"), info.exp_bits, info.man_bits), v, f"{fmt} {_pattern(c, info)}")
            for c, v in enumerate(values)
        ]
    return grade(
        "my_decode",
        fn,
        targeted + sweep,
        hint="split the string into sign (1 bit), exponent (exp_bits) and mantissa (man_bits); "
        "bias = 2^(exp_bits-1) - 1; exponent 0 is subnormal (no hidden 1, exponent 1 - bias); "
        "exponent all ones is inf (mantissa 0) or NaN",
        hints=hints,
        quiet=quiet,
    )


_DECODE_HINTS = {
    "normal": "a normal number is (1 + m/2^M) * 2^(e - bias) with bias = 2^(E-1) - 1 (127 for 8 exponent bits, not 128)",
    "normal above 1": "a normal number is (1 + m/2^M) * 2^(e - bias): the mantissa is a fraction of 2^M after a hidden 1",
    "negative": "the first bit is the sign: 1 means negative",
    "smallest subnormal": "exponent field 0 means subnormal: no hidden 1, value (m/2^M) * 2^(1 - bias) (1 - bias, not -bias)",
    "largest subnormal": "exponent field 0 means subnormal: (m/2^M) * 2^(1 - bias), so it joins the normals without a gap",
    "negative zero": "sign 1, exponent 0, mantissa 0 is -0.0 (equal to 0.0)",
    "inf": "an all-ones exponent with mantissa 0 is infinity (math.inf), not a number",
    "-inf": "an all-ones exponent with mantissa 0 is infinity; with sign 1 it is -inf",
    "nan": "an all-ones exponent with a nonzero mantissa is NaN (math.nan)",
}


def _first_inexact_integer(fmt: str) -> int:
    """The smallest positive integer that torch's cast to ``fmt`` changes."""
    n = torch.arange(1, 2**16 + 1, dtype=torch.float64)  # fp16 and bf16 both change one below 2^16
    changed = n.to(_INFO[fmt].torch_dtype).to(torch.float64) != n
    return int(n[changed][0])


def check_first_gap(fp16_answer, bf16_answer, *, quiet: bool = False) -> bool:
    """Grade the smallest positive integers that fp16 and bf16 cannot store (each an int, or None if unanswered).

    The right answers are found by casting 1, 2, 3, ... with torch (``.to(torch.float16)`` /
    ``.to(torch.bfloat16)``) and taking the first that comes back changed. Rejects the classic
    off-by-ones ``2^(M+1)`` (still exact: a power of two), ``2^M + 1`` (exact: M + 1 significant
    bits hold it) and ``2^(M+1) - 1``. Taught in 01_float_bits.
    """
    answers = {"fp16": fp16_answer, "bf16": bf16_answer}
    if any(a is None for a in answers.values()):
        fn = None
    else:

        def fn(fmt):
            a = answers[fmt]
            if isinstance(a, bool) or not isinstance(a, (int, float)):
                raise TypeError(f"the answer for {fmt} must be an int, got {type(a).__name__}")
            return a

    hint = (
        "with M stored mantissa bits a normal number has M + 1 significant bits, so every integer up to "
        "2^(M+1) is exact (2^(M+1) itself is a power of two); the first that needs one bit more is just above it"
    )
    cases = [(("fp16",), _first_inexact_integer("fp16"), "fp16"), (("bf16",), _first_inexact_integer("bf16"), "bf16")]
    return grade("first gap", fn, cases, hint=hint, quiet=quiet)


def check_halving_bit(position, *, quiet: bool = False) -> bool:
    """Grade the position (counted from the left, sign bit = 0) of the one float32 bit whose flip halves 85.125.

    The right position is found with torch: each of the 32 bits of ``torch.tensor(85.125)`` is
    flipped in its int32 view and the result compared with 85.125 / 2. Rejects counting from the
    right (23), forgetting the sign bit (7), the neighbouring exponent bits and the sign bit.
    Taught in 01_float_bits.
    """
    word = torch.tensor([85.125], dtype=torch.float32).view(torch.int32)
    flips = torch.tensor([1 << (31 - p) if p else -(2**31) for p in range(32)], dtype=torch.int32)
    flipped = (word ^ flips).view(torch.float32)
    want = int((flipped == 85.125 / 2).nonzero()[0])

    def fn():
        if isinstance(position, bool) or not isinstance(position, int):
            raise TypeError(f"the answer must be an int in 0..31, got {type(position).__name__}")
        return position

    hint = (
        "halving subtracts 1 from the biased exponent: find the exponent field (the sign bit is position 0) "
        "and the one bit of it whose flip from 1 to 0 lowers the field by exactly 1"
    )
    return grade("halving bit", None if position is None else fn, [((), want)], hint=hint, quiet=quiet)
