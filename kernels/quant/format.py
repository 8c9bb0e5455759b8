"""Weight-only low-bit formats: int8 / int4 with a scale per group of input columns, and the same
codes for the kept values of an N:M weight.

Notation as in :mod:`kernels.nm.format`: ``W`` is ``nn.Linear``'s ``(out, in)``; groups run along
``in`` (the reduction dimension), ``group`` consecutive columns of one row share a scale (and, if
asymmetric, a zero point). ``group == in`` is per-channel (one scale per output row).

Dequantization (the only definition; every impl must reproduce it)::

    W[o, k] = scales[o, k // group] * (u[o, k] - z[o, k // group])

with ``u`` the stored unsigned code, ``0 <= u < 2**bits``, and ``z`` the stored zero point
(asymmetric) or the constant ``2**(bits - 1)`` (symmetric: ``u = q + 2**(bits-1)`` for the signed
code ``q`` in ``[-2**(bits-1), 2**(bits-1) - 1]``, offset binary, so one code path serves both).

Storage (``QuantWeight``):

| field | shape / dtype | notes |
|---|---|---|
| ``codes`` | ``(out, in * bits / 8)`` uint8 | int8: one code per byte. int4: two per byte, code ``2j`` in the low nibble of byte ``j`` and code ``2j + 1`` in the high nibble (row-major, rows never share a byte) |
| ``scales`` | ``(out, in / group)`` fp16 or fp32 | fp16 by default (the 0.5 bit per weight at g = 32 that llama.cpp's Q4_0 also pays) |
| ``zeros`` | ``(out, in / group)`` uint8, or None | None = symmetric |

``N:M + quant`` (:class:`NMQuantWeight`): the kept values of an :class:`~kernels.nm.NMWeight`
(``(out, in*n/m)``, compacted along ``in``) are quantized as a ``QuantWeight`` of that compacted
shape, so groups count *kept* values (g = 32 kept values of a 2:4 row span 64 dense columns); the
packed N:M indices are stored unchanged beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from kernels.nm.format import NMWeight, validate_nm

__all__ = ["BITS", "NMQuantWeight", "QuantWeight", "expected_nbytes", "pack_codes", "unpack_codes",
           "validate_quant"]

BITS = (4, 8)
SCALE_DTYPES = (torch.float16, torch.float32)


def validate_quant(shape: tuple[int, int], bits: int, group: int) -> None:
    """Check ``bits`` and ``group`` against a dense ``(out, in)`` shape; raise ``ValueError`` naming
    the value (every format constructor and every impl call goes through here)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}, got {bits!r}")
    if isinstance(group, bool) or not isinstance(group, int) or group < 1:
        raise ValueError(f"group must be a positive int, got {group!r}")
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (out, in) with both >= 1, got {tuple(shape)}")
    in_features = shape[1]
    if in_features % group:
        raise ValueError(f"group={group} does not divide the width in_features={in_features}")
    if bits == 4 and group % 2:
        raise ValueError(f"int4 packs two codes per byte, so group must be even, got group={group}")


def pack_codes(u: Tensor, bits: int) -> Tensor:
    """Unsigned codes ``(out, in)`` in ``[0, 2**bits)`` -> uint8 ``(out, in * bits / 8)`` (layout above).

    Raises:
        ValueError: a code outside ``[0, 2**bits)`` (names the first offending value), or int4 with an
            odd width.
    """
    if bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}, got {bits!r}")
    if u.dim() != 2:
        raise ValueError(f"codes must be 2-D (out, in), got shape {tuple(u.shape)}")
    u = u.to(torch.int64)
    if u.numel() and (int(u.min()) < 0 or int(u.max()) >= (1 << bits)):
        bad = u[(u < 0) | (u >= (1 << bits))][0].item()
        raise ValueError(f"code {bad} out of range [0, {1 << bits}) for {bits}-bit storage")
    if bits == 8:
        return u.to(torch.uint8).contiguous()
    if u.shape[1] % 2:
        raise ValueError(f"int4 packing needs an even width, got in_features={u.shape[1]}")
    pairs = u.view(u.shape[0], -1, 2)  # (out, in/2, 2): code 2j low, 2j+1 high
    return (pairs[..., 0] | (pairs[..., 1] << 4)).to(torch.uint8).contiguous()


def unpack_codes(packed: Tensor, bits: int) -> Tensor:
    """Inverse of :func:`pack_codes`: int16 ``(out, in)`` unsigned codes."""
    wide = packed.to(torch.int16)
    if bits == 8:
        return wide
    return torch.stack([wide & 0xF, wide >> 4], dim=-1).reshape(packed.shape[0], -1)


def _as_groups(t: Tensor, name: str, out_features: int, groups: int) -> Tensor:
    """Accept ``(out, G)``, or ``(out,)`` / ``(out, 1)`` when ``G == 1``, or ``(out, G, 1)``."""
    if t.dim() == 1 and groups == 1:
        t = t[:, None]
    elif t.dim() == 3 and t.shape[-1] == 1:
        t = t[..., 0]
    if tuple(t.shape) != (out_features, groups):
        raise ValueError(f"{name} must have shape ({out_features}, {groups}), got {tuple(t.shape)}")
    return t


@dataclass(eq=False)
class QuantWeight:
    """A weight-only quantized ``(out, in)`` weight; layout in the module docstring.

    Attributes:
        codes: uint8 ``(out, in * bits / 8)`` packed unsigned codes.
        scales: ``(out, in / group)`` fp16 or fp32.
        zeros: uint8 ``(out, in / group)`` zero points, or None (symmetric, zero = 2**(bits-1)).
        bits: 4 or 8.
        group: input columns per scale (``in`` = per-channel).
        shape: the dense ``(out, in)``.
    """

    codes: Tensor
    scales: Tensor
    zeros: Tensor | None
    bits: int
    group: int
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        self.shape = (int(self.shape[0]), int(self.shape[1]))
        self.validate(values=True)

    def validate(self, values: bool = False) -> None:
        """Re-check the fields: bits, group, shapes and dtypes always (O(1); every impl calls this
        before it reads the data); the zero points' range only with ``values`` (O(out * groups);
        done on construction).

        Raises:
            ValueError: fields that do not describe a valid weight.
        """
        validate_quant(self.shape, self.bits, self.group)
        out_features, in_features = self.shape
        need = (out_features, in_features * self.bits // 8)
        if self.codes.dtype != torch.uint8 or tuple(self.codes.shape) != need:
            raise ValueError(f"codes must be uint8 of shape {need}, got {self.codes.dtype} "
                             f"{tuple(self.codes.shape)}")
        groups = (out_features, in_features // self.group)
        if self.scales.dtype not in SCALE_DTYPES or tuple(self.scales.shape) != groups:
            raise ValueError(f"scales must be fp16/fp32 of shape {groups}, got {self.scales.dtype} "
                             f"{tuple(self.scales.shape)}")
        if self.zeros is not None and (self.zeros.dtype != torch.uint8
                                       or tuple(self.zeros.shape) != groups):
            raise ValueError(f"zeros must be uint8 of shape {groups}, got {self.zeros.dtype} "
                             f"{tuple(self.zeros.shape)}")
        if (values and self.zeros is not None and self.bits == 4 and self.zeros.numel()
                and int(self.zeros.max()) > 15):
            raise ValueError(f"zero point {int(self.zeros.max())} out of range [0, 16) for int4")

    # -- sizes -------------------------------------------------------------------------------
    @property
    def symmetric(self) -> bool:
        return self.zeros is None

    @property
    def groups(self) -> int:
        """Groups per row, ``in / group``."""
        return self.shape[1] // self.group

    @property
    def device(self) -> torch.device:
        return self.codes.device

    @property
    def nbytes(self) -> int:
        """Bytes a kernel must read: codes + scales + zeros."""
        zeros = 0 if self.zeros is None else self.zeros.numel()
        return self.codes.numel() + self.scales.numel() * self.scales.element_size() + zeros

    # -- conversion --------------------------------------------------------------------------
    @classmethod
    def from_codes(cls, codes: Tensor, scales: Tensor, zeros: Tensor | None = None, *, bits: int,
                   group: int, scale_dtype: torch.dtype = torch.float16) -> QuantWeight:
        """Pack the codes a fake-quantizer produced (``W ~= scales * (codes - zeros)``).

        Args:
            codes: integer-valued ``(out, in)`` (any int or float dtype). Symmetric (``zeros`` None):
                signed ``[-2**(bits-1), 2**(bits-1) - 1]``. Asymmetric: unsigned ``[0, 2**bits)``.
            scales: ``(out, in/group)`` (``(out,)`` allowed when per-channel); cast to ``scale_dtype``.
            zeros: None, or integer-valued ``(out, in/group)`` in ``[0, 2**bits)``.
            bits, group: as in the class.
            scale_dtype: fp16 (default, 2 B per group) or fp32 (exact copy of fp32 scales).

        Raises:
            ValueError: bits/group invalid, shapes disagree, non-integer or out-of-range codes/zeros.
        """
        if codes.dim() != 2:
            raise ValueError(f"codes must be 2-D (out, in), got shape {tuple(codes.shape)}")
        shape = (int(codes.shape[0]), int(codes.shape[1]))
        validate_quant(shape, bits, group)
        if scale_dtype not in SCALE_DTYPES:
            raise ValueError(f"scale_dtype must be one of {SCALE_DTYPES}, got {scale_dtype}")
        groups = shape[1] // group
        q = _integral(codes, "codes")
        if zeros is None:
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            offset = 1 << (bits - 1)
        else:
            lo, hi, offset = 0, (1 << bits) - 1, 0
        if q.numel() and (int(q.min()) < lo or int(q.max()) > hi):
            bad = q[(q < lo) | (q > hi)][0].item()
            kind = "symmetric" if zeros is None else "asymmetric"
            raise ValueError(f"code {bad} out of range [{lo}, {hi}] for {kind} {bits}-bit codes")
        scales = _as_groups(scales, "scales", shape[0], groups)
        if not torch.is_floating_point(scales) or not bool(torch.isfinite(scales).all()):
            raise ValueError("scales must be finite floating-point values")
        z = None
        if zeros is not None:
            z = _integral(_as_groups(zeros, "zeros", shape[0], groups), "zeros")
            bad_z = z[(z < 0) | (z > (1 << bits) - 1)]
            if bad_z.numel():
                raise ValueError(f"zero point {bad_z[0].item()} out of range [0, {(1 << bits) - 1}] "
                                 f"for {bits}-bit codes")
            z = z.to(torch.uint8).contiguous()
        return cls(codes=pack_codes(q + offset, bits), scales=scales.to(scale_dtype).contiguous(),
                   zeros=z, bits=bits, group=group, shape=shape)

    @classmethod
    def quantize(cls, w: Tensor, *, bits: int, group: int | None = None, symmetric: bool = True,
                 scale_dtype: torch.dtype = torch.float16) -> QuantWeight:
        """Round-to-nearest quantization of a float ``(out, in)`` weight (the RTN baseline).

        Symmetric: ``s = max|w| / (2**(bits-1) - 1)``, ``q = clamp(round(w / s))``. Asymmetric:
        ``s = (max - min) / (2**bits - 1)``, ``z = clamp(round(-min / s))``, ``u = clamp(round(w / s) + z)``.
        The codes are computed with the scale as stored (after the cast to ``scale_dtype``).

        Args:
            group: columns per scale; None = per-channel (``in``).
        """
        if w.dim() != 2 or not torch.is_floating_point(w):
            raise ValueError(f"w must be a 2-D float tensor, got {w.dtype} {tuple(w.shape)}")
        group = w.shape[1] if group is None else group
        validate_quant((int(w.shape[0]), int(w.shape[1])), bits, group)
        wg = w.detach().float().reshape(w.shape[0], -1, group)  # (out, G, g)
        tiny = torch.finfo(torch.float16).tiny
        if symmetric:
            qmax = (1 << (bits - 1)) - 1
            s = (wg.abs().amax(-1) / qmax).clamp_min(tiny).to(scale_dtype).float()  # (out, G)
            q = torch.round(wg / s[..., None]).clamp(-qmax - 1, qmax)
            return cls.from_codes(q.reshape(w.shape), s, None, bits=bits, group=group,
                                  scale_dtype=scale_dtype)
        qmax = (1 << bits) - 1
        lo, hi = wg.amin(-1).clamp(max=0), wg.amax(-1).clamp(min=0)
        s = ((hi - lo) / qmax).clamp_min(tiny).to(scale_dtype).float()
        z = torch.round(-lo / s).clamp(0, qmax)
        u = (torch.round(wg / s[..., None]) + z[..., None]).clamp(0, qmax)
        return cls.from_codes(u.reshape(w.shape), s, z, bits=bits, group=group,
                              scale_dtype=scale_dtype)

    def unsigned_codes(self) -> Tensor:
        """Stored codes ``u``, int16 ``(out, in)``."""
        return unpack_codes(self.codes, self.bits)

    def zero_points(self) -> Tensor:
        """``z`` per group, int16 ``(out, in / group)`` (the constant ``2**(bits-1)`` if symmetric)."""
        if self.zeros is None:
            return torch.full(self.scales.shape, 1 << (self.bits - 1), dtype=torch.int16,
                              device=self.device)
        return self.zeros.to(torch.int16)

    def to_codes(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """Inverse of :meth:`from_codes`: ``(codes int16 (out, in), scales, zeros uint8 or None)``."""
        u = self.unsigned_codes()
        if self.zeros is None:
            u = u - (1 << (self.bits - 1))
        return u, self.scales, self.zeros

    def dequantize(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """Dense ``(out, in)``: ``scales * (u - z)`` per group (the definition every impl follows)."""
        out_features, in_features = self.shape
        u = self.unsigned_codes().view(out_features, self.groups, self.group)
        q = (u - self.zero_points()[..., None]).to(torch.float32)  # exact small integers
        w = q * self.scales.to(torch.float32)[..., None]
        return w.reshape(out_features, in_features).to(dtype)

    # -- serialisation (tensors only, safetensors-friendly) ----------------------------------
    def to_state_dict(self, prefix: str = "") -> dict[str, Tensor]:
        """``{prefix}codes``, ``scales``, ``zeros`` (only if asymmetric), ``qmeta`` (int64 [bits,
        group]) and ``shape`` (int64 [out, in])."""
        sd = {
            f"{prefix}codes": self.codes.contiguous(),
            f"{prefix}scales": self.scales.contiguous(),
            f"{prefix}qmeta": torch.tensor([self.bits, self.group], dtype=torch.int64),
            f"{prefix}shape": torch.tensor(list(self.shape), dtype=torch.int64),
        }
        if self.zeros is not None:
            sd[f"{prefix}zeros"] = self.zeros.contiguous()
        return sd

    @classmethod
    def from_state_dict(cls, sd: dict[str, Tensor], prefix: str = "") -> QuantWeight:
        """Inverse of :meth:`to_state_dict`; ``KeyError``/``ValueError`` name the key."""
        for key in ("codes", "scales", "qmeta", "shape"):
            if f"{prefix}{key}" not in sd:
                raise KeyError(f"missing key {prefix}{key} in quantized state dict")
        meta, shape = sd[f"{prefix}qmeta"], sd[f"{prefix}shape"]
        if meta.numel() != 2 or shape.numel() != 2:
            raise ValueError(f"{prefix}qmeta must hold 2 ints and {prefix}shape 2, got "
                             f"{tuple(meta.shape)} and {tuple(shape.shape)}")
        bits, group = (int(v) for v in meta.tolist())
        return cls(codes=sd[f"{prefix}codes"], scales=sd[f"{prefix}scales"],
                   zeros=sd.get(f"{prefix}zeros"), bits=bits, group=group,
                   shape=tuple(int(v) for v in shape.tolist()))


def _integral(t: Tensor, name: str) -> Tensor:
    """int64 copy of an integer-valued tensor; ``ValueError`` for fractional or non-finite floats."""
    if torch.is_floating_point(t):
        if not bool(torch.isfinite(t).all()) or not bool((t == torch.round(t)).all()):
            raise ValueError(f"{name} must be integer-valued")
    return t.to(torch.int64)


@dataclass(eq=False)
class NMQuantWeight:
    """N:M sparse + quantized: the packed N:M indices of an :class:`NMWeight` and its kept values
    quantized as a :class:`QuantWeight` of the compacted shape ``(out, in * n / m)``.

    Attributes:
        q: the kept values, quantized (groups count kept values).
        indices, n, m, v: as in :class:`NMWeight`.
        shape: the dense ``(out, in)``.
    """

    q: QuantWeight
    indices: Tensor
    n: int
    m: int
    v: int
    shape: tuple[int, int]
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.shape = (int(self.shape[0]), int(self.shape[1]))
        self.validate()

    def validate(self) -> None:
        """Re-check the pattern and the quantized values (``ValueError`` naming the value)."""
        self.q.validate()
        self.pattern()

    def pattern(self) -> NMWeight:
        """An :class:`NMWeight` of this pattern with placeholder (zero, stride-0) values; building
        it validates ``n, m, v``, the shape and the packed indices."""
        validate_nm(self.shape, self.n, self.m, self.v)
        out_features, in_features = self.shape
        kept = in_features // self.m * self.n
        if tuple(self.q.shape) != (out_features, kept):
            raise ValueError(f"quantized kept values have shape {self.q.shape}, expected "
                             f"{(out_features, kept)} for shape={self.shape}, n:m={self.n}:{self.m}")
        placeholder = torch.zeros(1, 1, device=self.indices.device).expand(out_features, kept)
        nw = NMWeight(values=placeholder, indices=self.indices, n=self.n, m=self.m, v=self.v,
                      shape=self.shape)
        nw._cache = self._cache  # index layouts (offsets, columns) derived once per weight
        return nw

    @property
    def kept(self) -> int:
        return self.q.shape[1]

    @property
    def device(self) -> torch.device:
        return self.q.device

    @property
    def nbytes(self) -> int:
        """Codes + scales + zeros of the kept values + packed N:M indices."""
        return self.q.nbytes + self.indices.numel()

    @classmethod
    def from_nm(cls, w: NMWeight, *, bits: int, group: int | None = None, symmetric: bool = True,
                scale_dtype: torch.dtype = torch.float16) -> NMQuantWeight:
        """RTN-quantize the kept values of ``w`` (``group`` counts kept values; None = per row)."""
        q = QuantWeight.quantize(w.values.detach().float(), bits=bits, group=group,
                                 symmetric=symmetric, scale_dtype=scale_dtype)
        return cls(q=q, indices=w.indices, n=w.n, m=w.m, v=w.v, shape=w.shape)

    @classmethod
    def from_codes(cls, w: NMWeight, codes: Tensor, scales: Tensor, zeros: Tensor | None = None, *,
                   bits: int, group: int, scale_dtype: torch.dtype = torch.float16) -> NMQuantWeight:
        """Pattern of ``w``, kept values given as codes ``(out, in*n/m)`` (see
        :meth:`QuantWeight.from_codes`)."""
        q = QuantWeight.from_codes(codes, scales, zeros, bits=bits, group=group,
                                   scale_dtype=scale_dtype)
        return cls(q=q, indices=w.indices, n=w.n, m=w.m, v=w.v, shape=w.shape)

    def to_nm(self, dtype: torch.dtype = torch.float32) -> NMWeight:
        """The N:M weight with dequantized kept values (shares the index caches)."""
        return self.pattern().with_values(self.q.dequantize(dtype))

    def dequantize(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """Dense ``(out, in)`` with zeros at pruned positions."""
        return self.to_nm(dtype).to_dense()

    def to_state_dict(self, prefix: str = "") -> dict[str, Tensor]:
        """:meth:`QuantWeight.to_state_dict` of the kept values plus ``indices``, ``nmv`` and
        ``dense_shape``."""
        sd = self.q.to_state_dict(prefix)
        sd[f"{prefix}indices"] = self.indices.contiguous()
        sd[f"{prefix}nmv"] = torch.tensor([self.n, self.m, self.v], dtype=torch.int64)
        sd[f"{prefix}dense_shape"] = torch.tensor(list(self.shape), dtype=torch.int64)
        return sd

    @classmethod
    def from_state_dict(cls, sd: dict[str, Tensor], prefix: str = "") -> NMQuantWeight:
        for key in ("indices", "nmv", "dense_shape"):
            if f"{prefix}{key}" not in sd:
                raise KeyError(f"missing key {prefix}{key} in N:M quantized state dict")
        nmv, shape = sd[f"{prefix}nmv"], sd[f"{prefix}dense_shape"]
        if nmv.numel() != 3 or shape.numel() != 2:
            raise ValueError(f"{prefix}nmv must hold 3 ints and {prefix}dense_shape 2")
        n, m, v = (int(x) for x in nmv.tolist())
        return cls(q=QuantWeight.from_state_dict(sd, prefix), indices=sd[f"{prefix}indices"], n=n,
                   m=m, v=v, shape=tuple(int(x) for x in shape.tolist()))


def expected_nbytes(shape: tuple[int, int], bits: int, group: int, *, symmetric: bool,
                    scale_bytes: int = 2) -> int:
    """Hand formula for :attr:`QuantWeight.nbytes` (used by tests and the benchmark's byte limits)."""
    out_features, in_features = shape
    groups = out_features * (in_features // group)
    return (out_features * in_features * bits) // 8 + groups * scale_bytes + (
        0 if symmetric else groups)

