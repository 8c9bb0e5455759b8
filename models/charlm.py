"""A small character-level causal language model (GRU), for the text-detection audit.

Vocabulary: a fixed printable-ASCII alphabet plus newline (:data:`ALPHABET`), so models of
different sizes share token ids (needed for cross-perplexity). Shapes: tokens (B, T) int64
-> logits (B, T, V) float32, where logits[:, t] predicts token t + 1.
"""

from __future__ import annotations

import string

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from tasks.platform.params import Width

ALPHABET = "\n" + "".join(c for c in string.printable if c not in "\t\r\x0b\x0c\n")
STOI = {c: i for i, c in enumerate(ALPHABET)}
VOCAB = len(ALPHABET)


def encode(text: str) -> torch.Tensor:
    """Text -> int64 (T,); raises on characters outside :data:`ALPHABET`."""
    bad = sorted({c for c in text if c not in STOI})
    if bad:
        raise ValueError(f"characters outside the LM alphabet: {bad[:10]}")
    return torch.tensor([STOI[c] for c in text], dtype=torch.int64)


def decode(tokens) -> str:
    return "".join(ALPHABET[int(t)] for t in tokens)


class CharLMSpec(BaseModel):
    """Size of a :class:`CharLM`.

    Attributes:
        d_embed: embedding width.
        hidden: GRU hidden width.
        layers: stacked GRU layers.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    d_embed: Width = 32
    hidden: Width = 128
    layers: int = Field(default=1, ge=1)


class CharLM(nn.Module):
    """Embedding -> GRU -> linear head over the shared alphabet."""

    def __init__(self, spec: CharLMSpec):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, spec.d_embed)
        self.rnn = nn.GRU(spec.d_embed, spec.hidden, spec.layers, batch_first=True)
        self.head = nn.Linear(spec.hidden, VOCAB)

    def forward(self, tokens: torch.Tensor, state: torch.Tensor | None = None):
        """tokens (B, T) -> (logits (B, T, V), state (layers, B, hidden))."""
        h, state = self.rnn(self.embed(tokens), state)
        return self.head(h), state

    @torch.no_grad()
    def sample(self, prompt: torch.Tensor, length: int, temperature: float, generator: torch.Generator) -> torch.Tensor:
        """Continue each prompt row (B, P) by ``length`` sampled tokens -> (B, P + length)."""
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.eval()
        logits, state = self(prompt)
        out = [prompt]
        nxt = logits[:, -1]
        for _ in range(length):
            tok = torch.multinomial(torch.softmax(nxt / temperature, -1), 1, generator=generator)  # (B, 1)
            out.append(tok)
            logits, state = self(tok, state)
            nxt = logits[:, -1]
        return torch.cat(out, 1)
