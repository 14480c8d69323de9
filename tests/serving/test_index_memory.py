"""The FAISS path filters seen items without a batch x candidates x history comparison.

Issue 17: with ``--index faiss`` each query with a 10,000-item history cost about 94 MB (16
queries: 1.8 GB). Bound: 16 such queries grow the process by less than 64 MB, and the results
are exactly the exact index's (an exhaustive IVF) with the excluded items left out."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hstu_blair.serving.index import ExactIndex, FaissIndex
from tests.serving.rss import peak_rss_growth

MIB = 2**20


def _vectors(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    vectors = F.normalize(torch.randn(n + 1, d, generator=g), dim=1)
    vectors[0] = 0
    return vectors


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_long_histories_cost_no_memory_and_are_excluded(kind):
    pytest.importorskip("faiss")
    n, d, b, history = 20_000, 32, 16, 10_000
    vectors = _vectors(n, d, 0)
    index = FaissIndex(vectors, kind) if kind == "hnsw" else FaissIndex(vectors, "ivf", nlist=16, nprobe=16)
    queries = F.normalize(torch.randn(b, d, generator=torch.Generator().manual_seed(1)), dim=1)
    _, best = ExactIndex(vectors).search(queries, history, None)  # each query's 10,000 best items
    exclude = best.flip(1).contiguous()  # exclude them all: the answer lies beyond them
    with peak_rss_growth() as growth:
        values, indices = index.search(queries, 100, exclude)  # (B, 100) each
    assert growth[0] < 64 * MIB, f"grew {growth[0] / MIB:.0f} MiB"
    assert indices.shape == (b, 100) and bool((indices > 0).all())
    for row in range(b):
        assert not set(indices[row].tolist()) & set(exclude[row].tolist())
    if kind == "ivf":  # all cells probed: exact
        exact_v, exact_i = ExactIndex(vectors).search(queries, 100, exclude)
        assert torch.equal(indices, exact_i)
        torch.testing.assert_close(values, exact_v)


def test_missing_results_are_padding():
    pytest.importorskip("faiss")
    vectors = _vectors(100, 8, 2)
    index = FaissIndex(vectors, "ivf", nlist=2, nprobe=2)
    exclude = torch.arange(1, 96).unsqueeze(0)  # (1, 95): only 5 items may be returned
    values, indices = index.search(vectors[1:2], 10, exclude)
    assert sorted(indices[0, :5].tolist()) == [96, 97, 98, 99, 100]
    assert indices[0, 5:].tolist() == [0] * 5 and bool(torch.isinf(values[0, 5:]).all())
