"""HSTU encoder against a hand computation of the SPEC formulas (§2.3, §2.4, §8.3)."""

from __future__ import annotations

import math

import pytest
import torch

from hstu_blair.models.hstu import HSTU, relative_positions, time_buckets

B, T, D, H, DQK, DV, N = 2, 5, 8, 2, 4, 4, 7  # N = max_len > T, so the divisor N != T is checked
LENGTHS = [5, 3]
# seconds; column lengths[b] is the next-event time, later columns are ignored
TIMESTAMPS = [
    [1_000, 1_000, 4_600, 90_000, 3_000_000, 40_000_000],
    [7, 65, 86_407, 0, 0, 0],
]


def make_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.tensor([[3, 1, 4, 1, 5], [2, 6, 5, 0, 0]])  # (B, T)
    emb = torch.randn(B, T, D, generator=gen) * 0.1  # (B, T, D)
    emb[1, 3:] = 0.0
    return emb, ids, torch.tensor(TIMESTAMPS), torch.tensor(LENGTHS)


def make_encoder(num_blocks: int = 1, max_len: int = N, seed: int = 0) -> HSTU:
    torch.manual_seed(seed)
    enc = HSTU(max_len, D, num_blocks, H, DQK, DV, dropout=0.0, input_dropout=0.0)
    with torch.no_grad():  # larger RAB weights so the bias visibly matters in the check
        for block in enc.blocks:
            block.rab.pos_w.normal_(0.0, 0.5)
            block.rab.ts_w.normal_(0.0, 0.5)
    return enc.eval()


def hand_bucket(dt: int) -> int:
    return min(max(math.floor(math.log(max(abs(dt), 1)) / 0.301), 0), 128)


def silu(x: float) -> float:
    return x / (1.0 + math.exp(-x))


def layer_norm(x: list[float], eps: float = 1e-6) -> list[float]:
    mean = sum(x) / len(x)
    var = sum((a - mean) ** 2 for a in x) / len(x)
    return [(a - mean) / math.sqrt(var + eps) for a in x]


def hand_hstu_one_block(enc: HSTU, emb, timestamps, lengths) -> torch.Tensor:
    """One HSTU block written out with Python loops over rows, positions, heads and dims."""
    block = enc.blocks[0]
    P = enc.pos_emb.weight.double().tolist()
    W = block.uvqk.double().tolist()  # (D, 2h*dv + 2h*dqk)
    Wo = block.out.weight.double().tolist()  # (D, h*dv)
    bo = block.out.bias.double().tolist()
    pos_w = block.rab.pos_w.double().tolist()
    ts_w = block.rab.ts_w.double().tolist()
    out = torch.zeros(B, T, D, dtype=torch.float64)
    for b in range(B):
        L = int(lengths[b])
        t = [int(v) for v in timestamps[b]]
        x0 = [[float(emb[b, i, d]) * math.sqrt(D) + P[i][d] for d in range(D)] for i in range(L)]
        u, v, q, k = [], [], [], []
        for i in range(L):
            xn = layer_norm(x0[i])
            row = [silu(sum(xn[d] * W[d][c] for d in range(D))) for c in range(len(W[0]))]
            u.append(row[: H * DV])
            v.append(row[H * DV : 2 * H * DV])
            q.append(row[2 * H * DV : 2 * H * DV + H * DQK])
            k.append(row[2 * H * DV + H * DQK :])
        for i in range(L):
            o = [0.0] * (H * DV)
            for h in range(H):
                for j in range(i + 1):  # causal, diagonal included
                    s = sum(q[i][h * DQK + d] * k[j][h * DQK + d] for d in range(DQK))
                    s += pos_w[N - 1 + j - i] + ts_w[hand_bucket(t[i + 1] - t[j])]
                    a = silu(s) / N
                    for d in range(DV):
                        o[h * DV + d] += a * v[j][h * DV + d]
            on = layer_norm(o)
            y = [u[i][c] * on[c] for c in range(H * DV)]
            x1 = [x0[i][d] + bo[d] + sum(Wo[d][c] * y[c] for c in range(H * DV)) for d in range(D)]
            norm = max(math.sqrt(sum(a * a for a in x1)), 1e-6)
            out[b, i] = torch.tensor([a / norm for a in x1], dtype=torch.float64)
    return out


def test_one_block_matches_hand_computation():
    enc = make_encoder()
    emb, ids, timestamps, lengths = make_batch()
    with torch.no_grad():
        got = enc(emb, ids, timestamps, lengths)  # (B, T, D)
    want = hand_hstu_one_block(enc, emb, timestamps, lengths)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0)
    assert got[1, 3:].abs().max() == 0.0  # padded rows are exactly zero
    norms = got.norm(dim=-1)
    torch.testing.assert_close(norms[0], torch.ones(T))


def test_relative_bias_indices_match_brute_force():
    gen = torch.Generator().manual_seed(1)
    base = torch.randint(0, 2_000_000_000_000, (3, 1), generator=gen)
    steps = torch.randint(0, 10**11, (3, 9), generator=gen)  # ms-scale gaps, unsorted is allowed
    timestamps = torch.cat([base, base + steps], dim=1)  # (3, 10)
    timestamps[0, 3] = timestamps[0, 2]  # a zero gap
    got = time_buckets(timestamps)  # (3, 9, 9)
    positions = relative_positions(9, max_len=12)  # (9, 9)
    for b in range(3):
        for i in range(9):
            for j in range(9):
                dt = int(timestamps[b, i + 1]) - int(timestamps[b, j])
                assert int(got[b, i, j]) == hand_bucket(dt), (b, i, j, dt)
                assert int(positions[i, j]) == 12 - 1 + j - i


def test_time_bucket_scale_for_seconds():
    # SPEC §2.4: 1 s -> 0, 1 h -> 27, 1 day -> 37, 1 year -> 57; a gap of 0 -> 0
    gaps = [0, 1, 3_600, 86_400, 365 * 86_400]
    timestamps = torch.tensor([[0] + gaps])  # (1, 6): query i, key 0 sees t[i+1] - t[0] = gaps[i]
    got = time_buckets(timestamps)[0, :, 0].tolist()
    assert got == [0, 0, 27, 37, 57]
    assert time_buckets(torch.tensor([[0, 10**18]]))[0, 0, 0] == 128  # capped


def test_trimmed_batch_equals_padding_to_max_len():
    enc = make_encoder(num_blocks=3)
    emb, ids, timestamps, lengths = make_batch()
    pad = N - T
    emb_full = torch.cat([emb, torch.zeros(B, pad, D)], dim=1)  # (B, N, D)
    ids_full = torch.cat([ids, torch.zeros(B, pad, dtype=torch.long)], dim=1)  # (B, N)
    ts_full = torch.cat([timestamps, torch.zeros(B, pad, dtype=torch.long)], dim=1)  # (B, N+1)
    with torch.no_grad():
        trimmed = enc(emb, ids, timestamps, lengths)  # (B, T, D)
        full = enc(emb_full, ids_full, ts_full, lengths)  # (B, N, D)
        shorter = enc(emb[:, :4], ids[:, :4], timestamps[:, :5], torch.tensor([4, 3]))
    torch.testing.assert_close(full[:, :T], trimmed, atol=1e-6, rtol=0)
    assert full[:, T:].abs().max() == 0.0
    torch.testing.assert_close(shorter[1, :3], trimmed[1, :3], atol=1e-6, rtol=0)


def test_padding_positions_do_not_matter():
    enc = make_encoder(num_blocks=2)
    emb, ids, timestamps, lengths = make_batch()
    emb2, ids2, ts2 = emb.clone(), ids.clone(), timestamps.clone()
    emb2[1, 3:] = torch.randn(2, D)  # garbage vectors at padded positions
    ids2[1, 3:] = torch.tensor([9, 9])  # e.g. a target id scattered at position lengths[b]
    ts2[1, 4:] = torch.tensor([123, 456])  # columns after the next-event time
    with torch.no_grad():
        a = enc(emb, ids, timestamps, lengths)
        b = enc(emb2, ids2, ts2, lengths)
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_causal_later_items_do_not_change_earlier_outputs():
    enc = make_encoder(num_blocks=2)
    emb, ids, timestamps, lengths = make_batch()
    emb2 = emb.clone()
    emb2[0, 3] += 1.0  # change the item at position 3 (its time, t[3], is seen by query 2 by design)
    with torch.no_grad():
        a = enc(emb, ids, timestamps, lengths)
        b = enc(emb2, ids, timestamps, lengths)
    torch.testing.assert_close(a[0, :3], b[0, :3], atol=0, rtol=0)
    assert (a[0, 3] - b[0, 3]).abs().max() > 1e-3
    torch.testing.assert_close(a[1], b[1], atol=0, rtol=0)  # other rows untouched


def test_next_event_time_is_used_by_last_position_only():
    enc = make_encoder()
    emb, ids, timestamps, lengths = make_batch()
    ts2 = timestamps.clone()
    ts2[0, 5] += 10**9  # next-event time of row 0 (lengths[0] = 5)
    with torch.no_grad():
        a = enc(emb, ids, timestamps, lengths)
        b = enc(emb, ids, ts2, lengths)
    torch.testing.assert_close(a[0, :4], b[0, :4], atol=0, rtol=0)
    assert (a[0, 4] - b[0, 4]).abs().max() > 1e-4


def test_dropout_only_in_training_and_gradients_flow():
    torch.manual_seed(0)
    enc = HSTU(N, D, 2, H, DQK, DV, dropout=0.5, input_dropout=0.5)
    emb, ids, timestamps, lengths = make_batch()
    enc.eval()
    assert torch.equal(enc(emb, ids, timestamps, lengths), enc(emb, ids, timestamps, lengths))
    enc.train()
    out = enc(emb.requires_grad_(), ids, timestamps, lengths)
    out[0, 4].sum().backward()
    for name, param in enc.named_parameters():
        assert param.grad is not None, name
    assert emb.grad[1].abs().max() == 0.0  # row 1 does not feed row 0


@pytest.mark.parametrize(
    ("max_len", "d_model", "blocks", "heads", "d_head", "stack_params"),
    [
        (211, 50, 2, 1, 50, 26_200),  # ML-1M HSTU
        (211, 50, 8, 2, 25, 104_800),  # ML-1M HSTU-large
        (61, 64, 4, 4, 16, 83_176),  # Books / HB HSTU
        (61, 64, 16, 8, 8, 332_704),  # Books HSTU-large
        (211, 256, 4, 4, 64, 1_313_944),  # ML-20M HSTU
    ],
)
def test_parameter_counts_match_spec(max_len, d_model, blocks, heads, d_head, stack_params):
    enc = HSTU(max_len, d_model, blocks, heads, d_head, d_head)
    assert sum(p.numel() for p in enc.blocks.parameters()) == stack_params
    assert enc.pos_emb.weight.shape == (max_len, d_model)


def test_positional_table_is_xavier_normal():
    torch.manual_seed(0)
    enc = HSTU(211, 256, 1, 1, 8, 8)
    want = math.sqrt(2.0 / (211 + 256))
    assert abs(enc.pos_emb.weight.std().item() - want) < 0.05 * want


def test_rejects_wrong_timestamp_width():
    enc = make_encoder()
    emb, ids, timestamps, lengths = make_batch()
    with pytest.raises(AssertionError, match="T\\+1"):
        enc(emb, ids, timestamps[:, :T], lengths)


def test_time_scale_moves_buckets_as_milliseconds_would():
    """The reference keeps Amazon 2023 timestamps in milliseconds: scale 1000 on second timestamps
    gives the buckets of the millisecond differences (ln(1000) / 0.301 = 22.9 buckets higher)."""
    seconds = torch.tensor([[0, 5, 3_600, 86_400, 86_400 * 365]])
    ms = time_buckets(seconds * 1000)
    assert torch.equal(time_buckets(seconds, time_scale=1000), ms)
    assert (time_buckets(seconds)[0, -1, :-1] + 22 <= ms[0, -1, :-1]).all()
