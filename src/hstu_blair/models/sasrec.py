"""SASRec sequence model as the reference baseline builds it (SPEC §2.3, §2.5), in one file.

Same forward signature as ``HSTU``; timestamps are accepted and ignored. Dense
right-padded (B, T, D) layout with T <= max_len; causal attention hides padding from every real
position, and padded rows are zeroed after each block, so outputs do not depend on T.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hstu_blair.models.dropout import dropout

LN_EPS = 1e-8
OUTPUT_EPS = 1e-6


class SASRecBlock(nn.Module):
    """One SASRec block:

    ``Q = LN(x)``; ``a = MHA(Q, x, x, causal)``; ``z = LN(Q + a)``;
    ``x' = z + Dropout(W2 Dropout(ReLU(W1 z)))``. LayerNorms have eps 1e-8 and no affine parameters
    (the reference), or learned ones (``learned_norms``, as the original SASRec). The reference's
    kernel-size-1 Conv1d layers are written as the equivalent Linear layers.
    """

    def __init__(
        self, d_model: int, num_heads: int, d_ffn: int, dropout: float, learned_norms: bool = False
    ) -> None:
        super().__init__()
        self.dropout = dropout
        self.q_norm = nn.LayerNorm(d_model, eps=LN_EPS, elementwise_affine=learned_norms)
        self.ffn_norm = nn.LayerNorm(d_model, eps=LN_EPS, elementwise_affine=learned_norms)
        self.attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.ffn_in = nn.Linear(d_model, d_ffn)
        self.ffn_out = nn.Linear(d_ffn, d_model)

    def forward(self, x: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
        """(B, T, D) input, (T, T) bool mask (True = blocked) -> (B, T, D), padding not zeroed."""
        q = self.q_norm(x)  # (B, T, D) only the query is normalised
        a, _ = self.attn(q, x, x, attn_mask=causal, need_weights=False)  # (B, T, D)
        z = self.ffn_norm(q + a)  # (B, T, D)
        hidden = dropout(F.relu(self.ffn_in(z)), self.dropout, training=self.training)  # (B, T, H)
        return z + dropout(self.ffn_out(hidden), self.dropout, training=self.training)  # (B, T, D)


class SASRec(nn.Module):
    """SASRec sequence model: raw item vectors -> L2-normalised (or raw) states at every position.

    Input: ``X0 = Dropout(E * sqrt(D) + P[0..T-1])`` with padded rows zeroed; P has ``max_len``
    rows, truncated-normal(std sqrt(1/D)) init. Every >= 2-D block parameter is Xavier-normal
    (biases keep PyTorch defaults), as the reference's ``reset_state``.

    The reference (HSTU's repository) drops the original SASRec's final LayerNorm and its learned
    LayerNorm parameters, since its states are L2-normalised for cosine scores. ``learned_norms``
    puts both back (Kang & McAuley's SASRec, and the SASRec of RecTools' benchmarks); with
    ``normalize=False`` the states are returned raw, for dot-product scores.

    Args:
        max_len: N, rows of the positional table (the reference uses L_max + 11).
        d_model: D.
        num_blocks: number of blocks.
        num_heads: attention heads (D must be divisible by it).
        d_ffn: hidden width of the feed-forward layer.
        dropout: attention and feed-forward dropout (reference ``ffn_dropout_rate``).
        input_dropout: dropout on the input sum (reference ``dropout_rate``).
        learned_norms: LayerNorms with learned scale and shift, and a final LayerNorm.
        normalize: L2-normalise the output states (cosine scores; the reference).
    """

    def __init__(
        self,
        max_len: int,
        d_model: int,
        num_blocks: int,
        num_heads: int,
        d_ffn: int,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        learned_norms: bool = False,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.max_len, self.d_model = max_len, d_model
        self.input_dropout = input_dropout
        self.normalize = normalize
        self.pos_emb = nn.Embedding(max_len, d_model)
        std = math.sqrt(1.0 / d_model)
        nn.init.trunc_normal_(self.pos_emb.weight, std=std, a=-2 * std, b=2 * std)
        self.blocks = nn.ModuleList(
            SASRecBlock(d_model, num_heads, d_ffn, dropout, learned_norms) for _ in range(num_blocks)
        )
        for param in self.blocks.parameters():
            if param.dim() >= 2:
                nn.init.xavier_normal_(param)
        self.final_norm = nn.LayerNorm(d_model, eps=LN_EPS) if learned_norms else nn.Identity()

    def forward(
        self, item_emb: torch.Tensor, ids: torch.Tensor, timestamps: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """Encode a right-padded batch.

        Args:
            item_emb: (B, T, D) raw item vectors of ``ids``.
            ids: (B, T) long item ids, 0 = padding.
            timestamps: ignored (any shape, e.g. (B, T+1) as for HSTU).
            lengths: (B,) long real positions per row; positions at or beyond it are padding.

        Returns:
            (B, T, D) states, L2-normalised unless ``normalize=False``; padded rows are 0.
        """
        B, T, D = item_emb.shape
        assert self.max_len >= T, f"sequence width {T} exceeds max_len {self.max_len}"
        device = item_emb.device
        steps = torch.arange(T, device=device)  # (T,)
        valid = (steps[None, :] < lengths[:, None]) & (ids != 0)  # (B, T)
        valid = valid.unsqueeze(-1).to(item_emb.dtype)  # (B, T, 1)

        x = item_emb * math.sqrt(D) + self.pos_emb.weight[:T]  # (B, T, D)
        x = dropout(x, self.input_dropout, training=self.training) * valid  # (B, T, D)

        causal = torch.ones(T, T, device=device, dtype=torch.bool).triu_(1)  # (T, T) True = future
        for block in self.blocks:
            x = block(x, causal) * valid  # (B, T, D)
        x = self.final_norm(x) * valid  # (B, T, D)
        return F.normalize(x, dim=-1, eps=OUTPUT_EPS) if self.normalize else x  # (B, T, D)
