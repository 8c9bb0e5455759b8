"""Compressed N:M weight format (vector-wise N:M, NM-SpMM arXiv 2503.01253, Sec. III).

Notation (the paper's, mapped onto ``nn.Linear``):

* ``W`` has shape ``(out, in)`` as in ``nn.Linear.weight``; the reduction dimension is ``in``
  (the paper's K), and ``out`` is the paper's N (the weight matrix ``B`` there is ``K x N``, so our
  ``W`` is its transpose).
* N:M: along ``in``, every group of ``m`` consecutive columns keeps exactly ``n`` entries.
  Sparsity ``s = 1 - n/m``; ideal compute speedup ``m/n``.
* ``v`` (the paper's vector length, ``VEC_LEN = 32``): each block of ``v`` consecutive output rows
  shares one in-group pattern. ``v = 1`` is classic per-row N:M (NVIDIA ASP, torch 2:4).

Storage (``NMWeight``):

* ``values``: ``(out, in * n / m)`` in the weight dtype. Row ``o`` holds its kept entries in group
  order, and inside a group in ascending column order.
* ``indices``: one in-group offset (``0 .. m-1``) per kept position per vector block, logically
  ``(ceil(out / v), in / m, n)``, bit-packed at ``ceil(log2 m)`` bits per index into a flat ``uint8``
  tensor (little-endian bit stream). For ``v = 1`` that is one index per kept element; for ``v > 1``
  the index cost is divided by ``v``.
* ``out`` need not be a multiple of ``v``: the last vector block is then partial (it has
  ``out % v`` rows and its own pattern). ``in`` must be a multiple of ``m`` (an N:M group is only
  defined over ``m`` full columns; pad the layer's input yourself if needed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = [
    "NMWeight",
    "index_bits",
    "magnitude_mask",
    "pack_indices",
    "pattern_indices",
    "unpack_indices",
    "validate_nm",
]


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------
def validate_nm(shape: tuple[int, ...] | torch.Size, n: int, m: int, v: int = 1) -> None:
    """Check that an ``(out, in)`` weight shape admits ``n:m`` sparsity with vector size ``v``.

    Raises:
        TypeError: if n, m or v is not an int.
        ValueError: naming the offending value (n, m, v, or the shape).
    """
    for name, val in (("n", n), ("m", m), ("v", v)):
        if isinstance(val, bool) or not isinstance(val, int):
            raise TypeError(f"{name} must be an int, got {type(val).__name__} ({val!r})")
    if m < 1:
        raise ValueError(f"m must be >= 1, got m={m}")
    if not 0 < n <= m:
        raise ValueError(f"need 0 < n <= m, got n={n}, m={m}")
    if m > 256:
        raise ValueError(f"m must be <= 256 (indices are stored in at most 8 bits), got m={m}")
    if v < 1:
        raise ValueError(f"v must be >= 1, got v={v}")
    if len(shape) != 2:
        raise ValueError(f"weight must be 2-D (out, in), got shape {tuple(shape)}")
    out_features, in_features = shape
    if out_features < 1 or in_features < 1:
        raise ValueError(f"weight shape must be non-empty, got {tuple(shape)}")
    if in_features % m != 0:
        raise ValueError(
            f"in_features={in_features} (weight dim 1) is not a multiple of m={m}; "
            "N:M groups run along the input dimension"
        )


def index_bits(m: int) -> int:
    """Bits per packed in-group index: ``ceil(log2 m)`` (0 for m = 1)."""
    return (m - 1).bit_length()


# ----------------------------------------------------------------------------------------------
# masks
# ----------------------------------------------------------------------------------------------
def pattern_indices(w: Tensor, n: int, m: int, v: int = 1) -> Tensor:
    """Per-vector-block kept offsets chosen by magnitude.

    Args:
        w: ``(out, in)`` weight (any float dtype).
        n, m, v: the pattern (see module docstring).

    Returns:
        int64 ``(ceil(out / v), in / m, n)``: in each group the offsets of the ``n`` largest
        ``sum_{rows in block} |w|``, sorted ascending. Ties go to the lower offset (stable sort),
        so the result is deterministic.
    """
    validate_nm(w.shape, n, m, v)
    if not torch.is_floating_point(w):
        raise TypeError(f"w must be a floating-point tensor, got dtype {w.dtype}")
    if not bool(torch.isfinite(w).all()):
        raise ValueError("w contains NaN or Inf; a magnitude mask is undefined")
    out_features, in_features = w.shape
    n_vec = math.ceil(out_features / v)
    score = w.detach().abs().to(torch.float32)  # (out, in)
    pad = n_vec * v - out_features
    if pad:
        # PLATFORM: zero rows of the padded last block do not change its summed score.
        score = torch.cat([score, score.new_zeros(pad, in_features)], dim=0)
    score = score.view(n_vec, v, in_features // m, m).sum(dim=1)  # (n_vec, G, m)
    order = torch.sort(score, dim=-1, descending=True, stable=True).indices  # (n_vec, G, m)
    return order[..., :n].sort(dim=-1).values  # (n_vec, G, n), ascending offsets


def _mask_from_indices(idx: Tensor, out_features: int, m: int, v: int) -> Tensor:
    """Expand ``(n_vec, G, n)`` offsets to a bool ``(out, G*m)`` mask."""
    n_vec, groups, _ = idx.shape
    mask = torch.zeros(n_vec, groups, m, dtype=torch.bool, device=idx.device)
    mask.scatter_(-1, idx, True)  # (n_vec, G, m)
    mask = mask.view(n_vec, 1, groups * m).expand(n_vec, v, groups * m)
    return mask.reshape(n_vec * v, groups * m)[:out_features]  # (out, in)


def magnitude_mask(w: Tensor, n: int, m: int, v: int = 1) -> Tensor:
    """N:M magnitude mask (ASP ``m4n2_1d`` generalised; vector-wise as NM-SpMM).

    In every group of ``m`` consecutive input columns keep the ``n`` entries of largest ``|w|``;
    with ``v > 1`` each block of ``v`` consecutive output rows shares the pattern that maximises
    the summed ``|w|`` over the block. Ties go to the lower column (deterministic).

    Args:
        w: ``(out, in)`` weight, nn.Linear layout.
        n, m: keep ``n`` of every ``m``; ``0 < n <= m`` and ``in % m == 0``.
        v: output rows per shared pattern; ``out % v != 0`` gives a partial last block.

    Returns:
        bool ``(out, in)`` mask, exactly ``n`` True per group.
    """
    idx = pattern_indices(w, n, m, v)
    return _mask_from_indices(idx, w.shape[0], m, v)


# ----------------------------------------------------------------------------------------------
# bit packing
# ----------------------------------------------------------------------------------------------
def pack_indices(idx: Tensor, bits: int) -> Tensor:
    """Pack non-negative ints ``< 2**bits`` into a little-endian bit stream.

    Args:
        idx: integer tensor, any shape (flattened in C order).
        bits: bits per value, 0..8.

    Returns:
        uint8 ``(ceil(idx.numel() * bits / 8),)``.
    """
    flat = idx.reshape(-1).to(torch.int64)
    if bits == 0:
        return torch.zeros(0, dtype=torch.uint8, device=idx.device)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= (1 << bits)):
        raise ValueError(f"indices must lie in [0, {1 << bits}) to pack in {bits} bits")
    shifts = torch.arange(bits, device=idx.device)
    bitplane = ((flat[:, None] >> shifts) & 1).to(torch.uint8).reshape(-1)  # (L*bits,)
    pad = (-bitplane.numel()) % 8
    if pad:
        bitplane = torch.cat([bitplane, bitplane.new_zeros(pad)])
    weights = (1 << torch.arange(8, device=idx.device)).to(torch.uint8)
    return (bitplane.view(-1, 8) * weights).sum(dim=1, dtype=torch.uint8)


def unpack_indices(packed: Tensor, bits: int, count: int) -> Tensor:
    """Inverse of :func:`pack_indices`: int64 ``(count,)``."""
    if bits == 0:
        return torch.zeros(count, dtype=torch.int64, device=packed.device)
    need = math.ceil(count * bits / 8)
    if packed.dtype != torch.uint8 or packed.dim() != 1 or packed.numel() != need:
        raise ValueError(
            f"packed indices must be uint8 of shape ({need},) for {count} x {bits}-bit values, "
            f"got {packed.dtype} {tuple(packed.shape)}"
        )
    shifts = torch.arange(8, device=packed.device)
    bitplane = ((packed[:, None].to(torch.int64) >> shifts) & 1).reshape(-1)[: count * bits]
    weights = 1 << torch.arange(bits, device=packed.device)
    return (bitplane.view(count, bits) * weights).sum(dim=1)


# ----------------------------------------------------------------------------------------------
# the compressed weight
# ----------------------------------------------------------------------------------------------
_META_KEYS = ("values", "indices", "nmv", "shape")


@dataclass(eq=False)
class NMWeight:
    """A compressed N:M (vector-wise) weight; see the module docstring for the layout.

    Attributes:
        values: ``(out, in*n/m)`` kept values, weight dtype.
        indices: flat uint8, packed in-group offsets of ``(ceil(out/v), in/m, n)``.
        n, m, v: the pattern.
        shape: the dense ``(out, in)``.
    """

    values: Tensor
    indices: Tensor
    n: int
    m: int
    v: int
    shape: tuple[int, int]
    # PLATFORM: derived, index-only layouts used by kernels (never serialised).
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.shape = (int(self.shape[0]), int(self.shape[1]))
        validate_nm(self.shape, self.n, self.m, self.v)
        out_features, in_features = self.shape
        kept = in_features // self.m * self.n
        if not torch.is_floating_point(self.values):
            raise TypeError(f"values must be floating point, got {self.values.dtype}")
        if tuple(self.values.shape) != (out_features, kept):
            raise ValueError(
                f"values shape {tuple(self.values.shape)} does not match {(out_features, kept)} "
                f"for shape={self.shape}, n={self.n}, m={self.m}"
            )
        need = math.ceil(self.num_indices * index_bits(self.m) / 8)
        if self.indices.dtype != torch.uint8 or tuple(self.indices.shape) != (need,):
            raise ValueError(
                f"indices must be uint8 of shape ({need},), got {self.indices.dtype} "
                f"{tuple(self.indices.shape)}"
            )

    # -- sizes ------------------------------------------------------------------------------
    @property
    def n_vec(self) -> int:
        """Number of vector blocks, ``ceil(out / v)``."""
        return math.ceil(self.shape[0] / self.v)

    @property
    def groups(self) -> int:
        """Groups per row, ``in / m``."""
        return self.shape[1] // self.m

    @property
    def kept(self) -> int:
        """Kept entries per row, ``in * n / m`` (the compacted K')."""
        return self.groups * self.n

    @property
    def num_indices(self) -> int:
        return self.n_vec * self.groups * self.n

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def device(self) -> torch.device:
        return self.values.device

    @property
    def nbytes(self) -> int:
        """Bytes of values + packed indices (what a kernel must read)."""
        return self.values.numel() * self.values.element_size() + self.indices.numel()

    # -- derived index layouts ----------------------------------------------------------------
    def offsets(self) -> Tensor:
        """Unpacked in-group offsets, int64 ``(n_vec, G, n)`` (cached)."""
        key = ("offsets", self.indices.device)
        if key not in self._cache:
            flat = unpack_indices(self.indices, index_bits(self.m), self.num_indices)
            self._cache[key] = flat.view(self.n_vec, self.groups, self.n)
        return self._cache[key]

    def columns(self) -> Tensor:
        """Absolute kept input columns per vector block, int64 ``(n_vec, K')`` (cached)."""
        key = ("columns", self.indices.device)
        if key not in self._cache:
            base = torch.arange(self.groups, device=self.indices.device) * self.m  # (G,)
            cols = self.offsets() + base[None, :, None]  # (n_vec, G, n)
            self._cache[key] = cols.reshape(self.n_vec, self.kept)
        return self._cache[key]

    def offsets_u8(self) -> Tensor:
        """Kernel index layout: uint8 in-group offsets ``(n_vec, K')``, 1 byte each (cached)."""
        key = ("offsets_u8", self.indices.device)
        if key not in self._cache:
            self._cache[key] = self.offsets().reshape(self.n_vec, self.kept).to(torch.uint8)
        return self._cache[key]

    def row_columns(self) -> Tensor:
        """Absolute kept input columns per output row, int64 ``(out, K')``."""
        return self.columns().repeat_interleave(self.v, dim=0)[: self.shape[0]]

    def mask(self) -> Tensor:
        """Dense bool ``(out, in)`` mask of kept positions."""
        return _mask_from_indices(self.offsets(), self.shape[0], self.m, self.v)

    # -- conversion ---------------------------------------------------------------------------
    @classmethod
    def from_dense(
        cls, w: Tensor, mask: Tensor | None = None, *, n: int, m: int, v: int = 1
    ) -> NMWeight:
        """Compress ``w`` keeping the entries where ``mask`` is True.

        Args:
            w: ``(out, in)`` float weight.
            mask: bool ``(out, in)`` with exactly ``n`` True per group of ``m`` input columns and
                the same pattern on every row of a ``v``-row block; defaults to
                :func:`magnitude_mask`. Entries of ``w`` outside the mask are dropped (pruned).
            n, m, v: the pattern.

        Raises:
            ValueError: if the mask is not ``n:m`` with vector size ``v``, or shapes disagree.
        """
        validate_nm(w.shape, n, m, v)
        if not torch.is_floating_point(w):
            raise TypeError(f"w must be a floating-point tensor, got dtype {w.dtype}")
        out_features, in_features = w.shape
        groups = in_features // m
        n_vec = math.ceil(out_features / v)
        if mask is None:
            idx = pattern_indices(w, n, m, v)  # (n_vec, G, n)
        else:
            if mask.dtype != torch.bool:
                raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
            if mask.shape != w.shape:
                raise ValueError(f"mask shape {tuple(mask.shape)} != weight shape {tuple(w.shape)}")
            mask = mask.to(w.device)
            counts = mask.view(out_features, groups, m).sum(dim=-1)  # (out, G)
            if bool((counts != n).any()):
                bad = (counts != n).nonzero()[0].tolist()
                raise ValueError(
                    f"mask is not {n}:{m}: row {bad[0]}, group {bad[1]} keeps "
                    f"{int(counts[bad[0], bad[1]])} of {m}"
                )
            rows_first = torch.arange(n_vec, device=w.device) * v  # first row of each block
            block_mask = mask[rows_first]  # (n_vec, in)
            expanded = _mask_from_indices(
                _offsets_from_mask(block_mask, n, m), out_features, m, v
            )
            if not torch.equal(expanded, mask):
                row = int((expanded != mask).any(dim=1).nonzero()[0])
                raise ValueError(
                    f"mask is not vector-wise with v={v}: row {row} differs from the first row "
                    f"of its block ({(row // v) * v})"
                )
            idx = _offsets_from_mask(block_mask, n, m)
        cols = (idx + torch.arange(groups, device=w.device)[None, :, None] * m).reshape(n_vec, -1)
        row_cols = cols.repeat_interleave(v, dim=0)[:out_features]  # (out, K')
        values = torch.gather(w.detach(), 1, row_cols).contiguous()  # (out, K')
        packed = pack_indices(idx, index_bits(m))
        return cls(values=values, indices=packed, n=n, m=m, v=v, shape=(out_features, in_features))

    def to_dense(self) -> Tensor:
        """Dense ``(out, in)`` weight with zeros at pruned positions (differentiable in values)."""
        out_features, in_features = self.shape
        dense = self.values.new_zeros(out_features, in_features)
        return dense.scatter(1, self.row_columns(), self.values)  # (out, in)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> NMWeight:
        """Copy to a device and/or cast the values (indices stay uint8)."""
        return NMWeight(
            values=self.values.to(device=device, dtype=dtype),
            indices=self.indices.to(device=device),
            n=self.n, m=self.m, v=self.v, shape=self.shape,
        )

    def with_values(self, values: Tensor) -> NMWeight:
        """Same pattern (and index caches), new values of the same shape (e.g. a Parameter)."""
        new = NMWeight(values=values, indices=self.indices, n=self.n, m=self.m, v=self.v,
                       shape=self.shape)
        new._cache = self._cache  # index-only caches are shared safely
        return new

    # -- serialisation (safetensors-friendly, no pickle) -------------------------------------
    def to_state_dict(self, prefix: str = "") -> dict[str, Tensor]:
        """Tensors only: ``{prefix}values``, ``{prefix}indices``, ``{prefix}nmv`` (int64 [n, m, v])
        and ``{prefix}shape`` (int64 [out, in]). ``prefix`` is prepended verbatim (e.g. ``"fc1."``)."""
        return {
            f"{prefix}values": self.values.detach().contiguous(),
            f"{prefix}indices": self.indices.contiguous(),
            f"{prefix}nmv": torch.tensor([self.n, self.m, self.v], dtype=torch.int64),
            f"{prefix}shape": torch.tensor(list(self.shape), dtype=torch.int64),
        }

    @classmethod
    def from_state_dict(cls, sd: dict[str, Tensor], prefix: str = "") -> NMWeight:
        """Inverse of :meth:`to_state_dict`; raises ``KeyError``/``ValueError`` naming the key."""
        for key in _META_KEYS:
            if f"{prefix}{key}" not in sd:
                raise KeyError(f"missing key {prefix}{key!s} in N:M state dict")
        nmv, shape = sd[f"{prefix}nmv"], sd[f"{prefix}shape"]
        if nmv.numel() != 3 or shape.numel() != 2:
            raise ValueError(
                f"{prefix}nmv must hold 3 ints and {prefix}shape 2, got {tuple(nmv.shape)} and "
                f"{tuple(shape.shape)}"
            )
        n, m, v = (int(x) for x in nmv.tolist())
        out_features, in_features = (int(x) for x in shape.tolist())
        return cls(
            values=sd[f"{prefix}values"], indices=sd[f"{prefix}indices"],
            n=n, m=m, v=v, shape=(out_features, in_features),
        )


def _offsets_from_mask(block_mask: Tensor, n: int, m: int) -> Tensor:
    """bool ``(rows, G*m)`` with n True per group -> int64 ascending offsets ``(rows, G, n)``."""
    rows, width = block_mask.shape
    grouped = block_mask.view(rows, width // m, m).to(torch.int8)
    # stable sort of (not kept) puts kept offsets first, in ascending order
    order = torch.sort(1 - grouped, dim=-1, stable=True).indices
    return order[..., :n]
