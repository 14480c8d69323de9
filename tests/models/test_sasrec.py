"""SASRec encoder: causality, padding and trim invariance, SPEC §2.7 parameter count."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hstu_blair.models.sasrec import SASRec

B, T, D, MAX_LEN = 2, 5, 8, 7


def make_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(B, T, D, generator=gen) * 0.1  # (B, T, D)
    emb[1, 3:] = 0.0
    ids = torch.tensor([[3, 1, 4, 1, 5], [2, 6, 5, 0, 0]])  # (B, T)
    timestamps = torch.zeros(B, T + 1, dtype=torch.long)
    return emb, ids, timestamps, torch.tensor([5, 3])


def make_encoder(dropout: float = 0.0) -> SASRec:
    torch.manual_seed(0)
    return SASRec(MAX_LEN, D, num_blocks=2, num_heads=2, d_ffn=16, dropout=dropout).eval()


def test_causal_later_items_do_not_change_earlier_outputs():
    enc = make_encoder()
    emb, ids, ts, lengths = make_batch()
    emb2 = emb.clone()
    emb2[0, 3] += 1.0
    with torch.no_grad():
        a, b = enc(emb, ids, ts, lengths), enc(emb2, ids, ts, lengths)
    torch.testing.assert_close(a[0, :3], b[0, :3], atol=1e-6, rtol=0)
    assert (a[0, 3] - b[0, 3]).abs().max() > 1e-3
    torch.testing.assert_close(a[1], b[1], atol=0, rtol=0)


def test_padding_and_trim_invariance():
    enc = make_encoder()
    emb, ids, ts, lengths = make_batch()
    emb2, ids2 = emb.clone(), ids.clone()
    emb2[1, 3:] = torch.randn(2, D)
    ids2[1, 3:] = 9
    pad = MAX_LEN - T
    emb_full = torch.cat([emb, torch.zeros(B, pad, D)], dim=1)  # (B, MAX_LEN, D)
    ids_full = torch.cat([ids, torch.zeros(B, pad, dtype=torch.long)], dim=1)  # (B, MAX_LEN)
    with torch.no_grad():
        a = enc(emb, ids, ts, lengths)
        b = enc(emb2, ids2, ts, lengths)
        full = enc(emb_full, ids_full, None, lengths)  # timestamps are ignored
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    torch.testing.assert_close(full[:, :T], a, atol=1e-6, rtol=0)
    assert a[1, 3:].abs().max() == 0.0 and full[:, T:].abs().max() == 0.0
    torch.testing.assert_close(a[0].norm(dim=-1), torch.ones(T))


def test_block_matches_spec_formula():
    """One block written with explicit per-position attention (single head), against the module."""
    torch.manual_seed(0)
    enc = SASRec(MAX_LEN, D, num_blocks=1, num_heads=1, d_ffn=16).eval()
    emb, ids, ts, lengths = make_batch()
    block = enc.blocks[0]
    w_q, w_k, w_v = block.attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = block.attn.in_proj_bias.chunk(3)
    want = torch.zeros(B, T, D)
    for b in range(B):
        L = int(lengths[b])
        x = emb[b, :L] * math.sqrt(D) + enc.pos_emb.weight[:L]  # (L, D)
        q = F.layer_norm(x, (D,), eps=1e-8)
        for i in range(L):
            qi = q[i] @ w_q.T + b_q
            keys = x[: i + 1] @ w_k.T + b_k  # (i+1, D)
            values = x[: i + 1] @ w_v.T + b_v
            attn = torch.softmax(keys @ qi / math.sqrt(D), dim=0)  # (i+1,)
            a = block.attn.out_proj(attn @ values)
            z = F.layer_norm(q[i] + a, (D,), eps=1e-8)
            y = z + block.ffn_out(torch.relu(block.ffn_in(z)))
            want[b, i] = y / y.norm().clamp(min=1e-6)
    with torch.no_grad():
        got = enc(emb, ids, ts, lengths)
    torch.testing.assert_close(got, want.detach(), atol=1e-5, rtol=0)


def test_parameter_count_matches_spec():
    enc = SASRec(211, 50, num_blocks=2, num_heads=1, d_ffn=50)  # ML-1M SASRec
    assert sum(p.numel() for p in enc.blocks.parameters()) == 30_600
    assert enc.pos_emb.weight.shape == (211, 50)


def test_init_follows_reference():
    torch.manual_seed(0)
    enc = SASRec(211, 256, num_blocks=1, num_heads=1, d_ffn=256)
    pos_std = math.sqrt(1.0 / 256) * 0.88  # std of a normal truncated at +-2 std
    assert abs(enc.pos_emb.weight.std().item() - pos_std) < 0.05 * pos_std
    w = enc.blocks[0].ffn_in.weight
    xavier_std = math.sqrt(2.0 / (256 + 256))
    assert abs(w.std().item() - xavier_std) < 0.05 * xavier_std


def test_dropout_only_in_training():
    enc = make_encoder(dropout=0.5)
    emb, ids, ts, lengths = make_batch()
    assert torch.equal(enc(emb, ids, ts, lengths), enc(emb, ids, ts, lengths))
    enc.train()
    torch.manual_seed(1)
    a = enc(emb, ids, ts, lengths)
    b = enc(emb, ids, ts, lengths)
    assert not torch.equal(a, b)
