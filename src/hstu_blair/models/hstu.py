"""HSTU sequence model (research HSTU of generative-recommenders, SPEC §2.3-2.4 and §8.3), in one file.

Reading order: relative attention bias (positions + time buckets), one HSTU block, the model
(input preprocessing, block stack, L2 normalisation).

Layout: dense (B, T, D), right-padded, T <= max_len (a batch may be trimmed to its longest row).
The reference runs the stack on a jagged layout; here padded rows are zeroed after every block,
and because attention is causal a real position never sees a padded one, so the outputs at real
positions equal the reference's (and do not depend on T). The three places where the reference
uses its padded length N (relative-position table, time-bias layout, attention divisor) use the
constant ``max_len`` instead of T, which keeps trimming exact.

Timestamps contract: ``timestamps`` is (B, T+1) long. For row b, columns 0..lengths[b]-1 hold the
times of the history items and column lengths[b] holds the time of the *next* event (the
training target or the held-out item, as the reference scatters it, SPEC §1.5); later columns are
ignored. Query position i is biased by the time bucket of |t[i+1] - t[j]| for each key j <= i.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hstu_blair.models.dropout import dropout

TIME_BUCKET_DIVISOR = 0.301  # log-bucket width of the reference (about log(2) / 2.3)
LN_EPS = 1e-6
OUTPUT_EPS = 1e-6
INIT_STD = 0.02


def relative_positions(seq_len: int, max_len: int, device: torch.device | None = None) -> torch.Tensor:
    """Index into a (2*max_len - 1) relative-position table: ``[i, j] = max_len - 1 + j - i``.

    Returns:
        (seq_len, seq_len) long tensor.
    """
    pos = torch.arange(seq_len, device=device)  # (T,)
    return max_len - 1 + pos[None, :] - pos[:, None]  # (T, T)


def time_buckets(timestamps: torch.Tensor, num_buckets: int = 128, time_scale: int = 1) -> torch.Tensor:
    """Log time buckets ``clamp(floor(ln(max(s * |t[i+1] - t[j]|, 1)) / 0.301), 0, num_buckets)``.

    Args:
        timestamps: (B, T+1) long seconds; column i+1 is the time of the event after position i.
        num_buckets: the largest bucket.
        time_scale: s, units per second of the differences that are bucketed: 1 (seconds, ours)
            or 1000 (milliseconds: the reference keeps Amazon 2023's millisecond timestamps, which
            moves every bucket up by about 23).

    Returns:
        (B, T, T) long bucket index for query i (row) and key j (column).
    """
    query_time = timestamps[:, 1:, None]  # (B, T, 1) time of the event after i
    key_time = timestamps[:, None, :-1]  # (B, 1, T) time of j
    dt = ((query_time - key_time).abs() * time_scale).clamp(min=1)  # (B, T, T) long
    # float32 log and truncation, as the reference computes it
    buckets = (torch.log(dt.to(torch.float32)) / TIME_BUCKET_DIVISOR).long()  # (B, T, T)
    return buckets.clamp(0, num_buckets)


class RelativeBias(nn.Module):
    """Relative attention bias of one block: ``pos_w[N-1+j-i] + ts_w[bucket(b, i, j)]``.

    Shared by all heads of the block; both tables N(0, 0.02) as in the reference.
    """

    def __init__(self, max_len: int, num_buckets: int = 128) -> None:
        super().__init__()
        self.pos_w = nn.Parameter(torch.empty(2 * max_len - 1).normal_(0.0, INIT_STD))
        self.ts_w = nn.Parameter(torch.empty(num_buckets + 1).normal_(0.0, INIT_STD))

    def forward(self, positions: torch.Tensor, buckets: torch.Tensor) -> torch.Tensor:
        """(T, T) position index + (B, T, T) bucket index -> (B, T, T) bias."""
        # index_select rather than w[idx]: its backward (index_add) is ~10x faster on CPU
        pos = self.pos_w.index_select(0, positions.reshape(-1)).view(positions.shape)  # (T, T)
        ts = self.ts_w.index_select(0, buckets.reshape(-1)).view(buckets.shape)  # (B, T, T)
        return pos + ts  # (B, T, T)


class HSTUBlock(nn.Module):
    """One HSTU layer (SPEC §2.4 steps 1-5):

    ``U,V,Q,K = SiLU(LN(x) W_uvqk)``; ``A = SiLU(QK^T + rab) / N`` causal (incl. diagonal);
    ``x + Linear_o(Dropout(U * LN(A V)))``. LayerNorms have no affine parameters (eps 1e-6),
    scores are not scaled by 1/sqrt(d), there is no softmax.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_qk: int,
        d_v: int,
        max_len: int,
        dropout: float = 0.0,
        num_buckets: int = 128,
    ) -> None:
        super().__init__()
        self.num_heads, self.d_qk, self.d_v = num_heads, d_qk, d_v
        self.dropout = dropout
        width = 2 * num_heads * d_v + 2 * num_heads * d_qk
        self.uvqk = nn.Parameter(torch.empty(d_model, width).normal_(0.0, INIT_STD))
        self.out = nn.Linear(num_heads * d_v, d_model)  # bias keeps PyTorch's default init
        nn.init.xavier_uniform_(self.out.weight)
        self.rab = RelativeBias(max_len, num_buckets)

    def forward(
        self, x: torch.Tensor, positions: torch.Tensor, buckets: torch.Tensor, causal: torch.Tensor
    ) -> torch.Tensor:
        """One block.

        Args:
            x: (B, T, D) input, padded rows zero.
            positions: (T, T) relative-position index (``relative_positions``).
            buckets: (B, T, T) time-bucket index (``time_buckets``).
            causal: (T, T) lower-triangular ones divided by N (the attention divisor).

        Returns:
            (B, T, D) ``x`` plus the block's update (padded rows are not zeroed here).
        """
        B, T, D = x.shape
        h, dqk, dv = self.num_heads, self.d_qk, self.d_v
        xn = F.layer_norm(x, (D,), eps=LN_EPS)  # (B, T, D)
        uvqk = F.silu(xn @ self.uvqk)  # (B, T, 2h*dv + 2h*dqk)
        u, v, q, k = torch.split(uvqk, [h * dv, h * dv, h * dqk, h * dqk], dim=-1)
        q = q.view(B, T, h, dqk).transpose(1, 2)  # (B, h, T, dqk)
        k = k.view(B, T, h, dqk).transpose(1, 2)  # (B, h, T, dqk)
        v = v.view(B, T, h, dv).transpose(1, 2)  # (B, h, T, dv)

        scores = q @ k.transpose(-1, -2) + self.rab(positions, buckets)[:, None]  # (B, h, T, T)
        attn = F.silu(scores) * causal  # (B, h, T, T) SiLU / N, keys j <= i only
        o = (attn @ v).transpose(1, 2).reshape(B, T, h * dv)  # (B, T, h*dv)

        y = u * F.layer_norm(o, (h * dv,), eps=LN_EPS)  # (B, T, h*dv) LN over all heads together
        y = dropout(y, self.dropout, training=self.training)
        return x + self.out(y)  # (B, T, D)


class HSTU(nn.Module):
    """HSTU sequence model: raw item vectors -> L2-normalised states at every position.

    Input (SPEC §2.3): ``X0 = Dropout(E * sqrt(D) + P[0..T-1])`` with padded rows zeroed; the
    positional table P has ``max_len`` rows, Xavier-normal init as the reference's ``reset_params``
    leaves it. Then ``num_blocks`` blocks (padded rows zeroed after each) and
    ``y / max(||y||, 1e-6)``. No final LayerNorm.

    Args:
        max_len: N, the attention size: rows of P, relative-position range (2N-1 weights) and the
            constant attention divisor. The reference uses N = L_max + 11 (61 for L_max=50,
            211 for L_max=200).
        d_model: D.
        num_blocks: number of HSTU blocks.
        num_heads: h.
        d_qk: per-head query/key width.
        d_v: per-head value width.
        dropout: dropout on ``U * LN(AV)`` before the output linear (reference ``linear_dropout_rate``).
        input_dropout: dropout on the input sum (reference ``dropout_rate``).
        num_time_buckets: largest time bucket (128; ``ts_w`` has one more weight).
        time_scale: units per second of the bucketed time differences (see :func:`time_buckets`).
        normalize: L2-normalise the output states (cosine scores, the reference); False returns
            them raw, for dot-product scores.
    """

    def __init__(
        self,
        max_len: int,
        d_model: int,
        num_blocks: int,
        num_heads: int,
        d_qk: int,
        d_v: int,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        num_time_buckets: int = 128,
        time_scale: int = 1,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.max_len, self.d_model = max_len, d_model
        self.normalize = normalize
        self.num_time_buckets = num_time_buckets
        self.time_scale = time_scale
        self.input_dropout = input_dropout
        self.pos_emb = nn.Embedding(max_len, d_model)
        nn.init.xavier_normal_(self.pos_emb.weight)
        self.blocks = nn.ModuleList(
            HSTUBlock(d_model, num_heads, d_qk, d_v, max_len, dropout, num_time_buckets)
            for _ in range(num_blocks)
        )

    def forward(
        self, item_emb: torch.Tensor, ids: torch.Tensor, timestamps: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """Encode a right-padded batch.

        Args:
            item_emb: (B, T, D) raw item vectors of ``ids``.
            ids: (B, T) long item ids, 0 = padding.
            timestamps: (B, T+1) long; see the module docstring (column lengths[b] = next event).
            lengths: (B,) long number of real positions per row (>= 1); positions at or beyond
                it are padding whatever their id (so the target may be scattered there).

        Returns:
            (B, T, D) states, L2-normalised unless ``normalize=False``; padded rows are 0.
        """
        B, T, D = item_emb.shape
        assert self.max_len >= T, f"sequence width {T} exceeds max_len {self.max_len}"
        assert timestamps.shape == (B, T + 1), f"timestamps must be (B, T+1), got {tuple(timestamps.shape)}"
        device = item_emb.device
        steps = torch.arange(T, device=device)  # (T,)
        valid = (steps[None, :] < lengths[:, None]) & (ids != 0)  # (B, T)
        valid = valid.unsqueeze(-1).to(item_emb.dtype)  # (B, T, 1)

        x = item_emb * math.sqrt(D) + self.pos_emb.weight[:T]  # (B, T, D)
        x = dropout(x, self.input_dropout, training=self.training) * valid  # (B, T, D)

        positions = relative_positions(T, self.max_len, device)  # (T, T), shared by all blocks
        buckets = time_buckets(timestamps, self.num_time_buckets, self.time_scale)  # (B, T, T), all blocks
        causal = torch.ones(T, T, device=device, dtype=x.dtype).tril_() / self.max_len  # (T, T)
        for block in self.blocks:
            x = block(x, positions, buckets, causal) * valid  # (B, T, D)
        return F.normalize(x, dim=-1, eps=OUTPUT_EPS) if self.normalize else x  # (B, T, D)
