"""``tinylm``: a small decoder-only Llama-style character LM (for the quantization papers).

Architecture as Llama (Touvron et al. 2023) and Hugging Face ``LlamaForCausalLM``: token embedding
-> ``layers`` x [pre-norm RMSNorm -> causal multi-head attention with rotary position embeddings
(RoPE, HF's ``rotate_half`` convention, theta 10000) -> residual; RMSNorm -> SwiGLU MLP
(``down(silu(gate(x)) * up(x))``) -> residual] -> final RMSNorm -> untied ``lm_head``. No biases.

Parameter names are HF's (``model.embed_tokens.weight``, ``model.layers.0.self_attn.q_proj.weight``,
``model.layers.0.mlp.down_proj.weight``, ``model.norm.weight``, ``lm_head.weight``, ...), so a
state dict maps one to one onto ``LlamaForCausalLM`` for peer tools. Vocabulary: the character
alphabet of :mod:`models.charlm`. Shapes: tokens (B, T) int64 -> logits (B, T, V) float32, where
``logits[:, t]`` predicts token ``t + 1``.
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from torch.nn import functional as F

from models.charlm import VOCAB

LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


class TinyLMSpec(BaseModel):
    """Size of a :class:`TinyLM`.

    Attributes:
        d_model: residual width (``hidden_size``).
        n_heads: attention heads; must divide ``d_model`` with an even head width (RoPE pairs).
        n_layers: decoder layers.
        d_ff: SwiGLU inner width (``intermediate_size``).
        max_len: longest sequence RoPE tables are built for.
        rope_theta: RoPE base.
        eps: RMSNorm epsilon.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    d_model: int = Field(default=128, ge=2)
    n_heads: int = Field(default=4, ge=1)
    n_layers: int = Field(default=4, ge=1)
    d_ff: int = Field(default=384, ge=1)
    max_len: int = Field(default=256, ge=2)
    rope_theta: float = Field(default=10000.0, gt=0)
    eps: float = Field(default=1e-5, gt=0)

    @model_validator(mode="after")
    def _heads(self) -> TinyLMSpec:
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={self.d_model} into even head widths")
        return self


class RMSNorm(nn.Module):
    """``x / rms(x) * weight`` over the last dimension (HF ``LlamaRMSNorm``)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(head_dim: int, max_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (max_len, head_dim), HF layout (frequencies repeated across both halves)."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    ang = torch.outer(torch.arange(max_len, dtype=torch.float64), inv)
    emb = torch.cat([ang, ang], -1)
    return emb.cos().float(), emb.sin().float()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, -1)
    return torch.cat([-b, a], -1)


class LayerKV:
    """One decoder layer's cached keys and values, each (B, H, T_past, hd) once filled."""

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None


class KVCache:
    """Keys and values of every layer for incremental decoding (what a served LM keeps between steps).

    Pass an empty cache with the prompt (prefill, causal), then one token per call; the cache grows
    in place. ``length`` is the number of positions decoded so far (the next token's position).
    """

    def __init__(self, n_layers: int) -> None:
        self.layers = [LayerKV() for _ in range(n_layers)]

    @property
    def length(self) -> int:
        k = self.layers[0].k
        return 0 if k is None else k.shape[2]


class Attention(nn.Module):
    """Causal multi-head self-attention with RoPE on q and k."""

    def __init__(self, spec: TinyLMSpec):
        super().__init__()
        d, self.h = spec.d_model, spec.n_heads
        self.q_proj, self.k_proj = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.v_proj, self.o_proj = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                kv: LayerKV | None = None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (p(x).view(b, t, self.h, d // self.h).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin  # (B, H, T, hd)
        causal = True
        if kv is not None:
            if kv.k is not None:  # decoding: the new tokens attend to every cached position
                if t != 1:
                    raise ValueError(f"a cached forward takes one new token per step, got {t}")
                k, v = torch.cat([kv.k, k], 2), torch.cat([kv.v, v], 2)  # (B, H, T_past + 1, hd)
                causal = False
            kv.k, kv.v = k, v
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    """SwiGLU: ``down(silu(gate(x)) * up(x))``."""

    def __init__(self, spec: TinyLMSpec):
        super().__init__()
        self.gate_proj = nn.Linear(spec.d_model, spec.d_ff, bias=False)
        self.up_proj = nn.Linear(spec.d_model, spec.d_ff, bias=False)
        self.down_proj = nn.Linear(spec.d_ff, spec.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, spec: TinyLMSpec):
        super().__init__()
        self.input_layernorm = RMSNorm(spec.d_model, spec.eps)
        self.self_attn = Attention(spec)
        self.post_attention_layernorm = RMSNorm(spec.d_model, spec.eps)
        self.mlp = MLP(spec)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                kv: LayerKV | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, kv)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaBody(nn.Module):
    """HF's ``LlamaModel``: embeddings, decoder layers, final norm."""

    def __init__(self, spec: TinyLMSpec):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, spec.d_model)
        self.layers = nn.ModuleList(DecoderLayer(spec) for _ in range(spec.n_layers))
        self.norm = RMSNorm(spec.d_model, spec.eps)


class TinyLM(nn.Module):
    """The Llama-style char LM; ``forward(tokens (B, T)) -> logits (B, T, V)``."""

    def __init__(self, spec: TinyLMSpec):
        super().__init__()
        self.spec = spec
        self.model = LlamaBody(spec)
        self.lm_head = nn.Linear(spec.d_model, VOCAB, bias=False)
        cos, sin = rope_tables(spec.d_model // spec.n_heads, spec.max_len, spec.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        for name, p in self.named_parameters():  # GPT-2/Llama-style init: N(0, 0.02), residual outputs scaled
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * spec.n_layers) if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits (B, T, V) of ``tokens`` (B, T); with ``cache`` the tokens continue the cached
        positions (an empty cache: the prompt; then one token per call) and the cache is extended."""
        p = 0 if cache is None else cache.length
        t = p + tokens.shape[1]
        if t > self.spec.max_len:
            raise ValueError(f"sequence length {t} > max_len {self.spec.max_len}")
        cos, sin = self.rope_cos[p:t], self.rope_sin[p:t]
        x = self.model.embed_tokens(tokens)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, None if cache is None else cache.layers[i])
        return self.lm_head(self.model.norm(x))

    def new_cache(self) -> KVCache:
        return KVCache(self.spec.n_layers)

    def linear_names(self) -> list[str]:
        """Every decoder linear, HF names (``model.layers.<i>.<LINEARS entry>``), in forward order."""
        return [f"model.layers.{i}.{n}" for i in range(self.spec.n_layers) for n in LINEARS]
