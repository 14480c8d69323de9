"""``hstu-blair prepare`` at the paper's real sizes: Amazon Video_Games and Steam, in the published formats.

Generates the input files once into ``--workdir`` (cached by scale and seed; generation time is
reported apart and never counted), then runs ``hstu-blair prepare`` as a subprocess, the real CLI
path, and reports its wall time, CPU time and peak memory against the goals of the issue:

- Amazon Video_Games: ``Video_Games.csv`` (5-core ``rating_only``: header
  ``user_id,parent_asin,rating,timestamp``, ms timestamps), a true 5-core of exactly 814,586 ratings
  over 94,762 users and 25,612 items, built by construction so ``prepare`` must give these counts;
  ``meta_Video_Games.jsonl`` with 137,269 objects of about 437 MB (long descriptions, image lists,
  details dicts, HTML entities, non-ASCII). Goal: <= 60 s wall and <= 3 GB peak RSS.
- Steam: ``steam_reviews.json.gz`` with 7,793,069 Python-literal dict lines (``u'..'`` / ``u".."``
  strings, ``\\xe9``/``\\u2665``/``\\U0001f600`` escapes, a few lines with only ``user_id``, a few
  repeated lines) and ``steam_games.json.gz`` with 32,135 lines. Run with ``--no-reviews`` and
  with reviews (the default, keeps review texts for ``pretrain-text``). Goal: <= 5 min wall.

Peak RSS is the largest single process (``wait4`` rusage, which covers the parser workers Steam
forks); "tree PSS" is the sampled sum over the process and its workers (shared pages counted once).
The baseline, measured in the same run, is the I/O floor: gunzip + read the inputs line by line.

    python bench/bench_prepare.py --which both                  # full size, ~1.7 GB of files in /tmp
    python bench/bench_prepare.py --which amazon --scale 0.05   # quick
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

AMAZON = {
    "users": 94_762,
    "items": 25_612,
    "ratings": 814_586,
    "meta_items": 137_269,
    "meta_bytes": 437_375_785,
}
"""Amazon Reviews 2023 Video_Games: 5-core sizes and the official metadata file (sha256 list)."""
STEAM = {"reviews": 7_793_069, "users": 2_567_538, "items": 15_474, "games": 32_135}
"""UCSD Steam (Kang & McAuley 2018): review lines, distinct users and reviewed games, game lines."""
GOALS = {"amazon": {"wall_s": 60.0, "rss_gb": 3.0}, "steam": {"wall_s": 300.0}}
DEFAULT_WORKDIR = Path("/tmp/hstu-blair-bench-prepare")
GENERATOR_VERSION = 3  # bump when the generated files change, to invalidate the cache


# ---- shared generation helpers ----------------------------------------------------------------


def heavy_tail_degrees(
    n: int, total: int, minimum: int, alpha: float, cap: int, rng: np.random.Generator
) -> np.ndarray:
    """(n,) integer degrees in [minimum, cap] with a Lomax tail, summing exactly to ``total``."""
    mean_extra = total / n - minimum
    scale = (mean_extra + 0.5) * (alpha - 1)  # Lomax mean = scale / (alpha - 1); +0.5 for the floor
    extra = np.floor(scale * (rng.random(n) ** (-1 / alpha) - 1)).astype(np.int64)
    degrees = minimum + np.minimum(extra, cap - minimum)  # (n,)
    while (diff := total - int(degrees.sum())) != 0:
        if diff > 0:
            room = np.flatnonzero(degrees < cap)
            np.add.at(degrees, rng.choice(room, min(diff, room.size), replace=False), 1)
        else:
            above = np.flatnonzero(degrees > minimum)
            degrees[rng.choice(above, min(-diff, above.size), replace=False)] -= 1
    return degrees


def simple_bipartite(
    user_deg: np.ndarray, item_deg: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Edges (users, items) with exactly these degrees and no repeated (user, item) pair.

    Configuration model: item stubs are shuffled against user stubs, then each repeated pair swaps
    its item with a random edge until none is left (swaps keep every degree).
    """
    users = np.repeat(np.arange(user_deg.size), user_deg)  # (N,)
    items = rng.permutation(np.repeat(np.arange(item_deg.size), item_deg))  # (N,)
    for _ in range(1000):
        key = users * item_deg.size + items
        order = np.argsort(key, kind="stable")
        repeated = order[1:][key[order[1:]] == key[order[:-1]]]
        if repeated.size == 0:
            return users, items
        for a, b in zip(repeated.tolist(), rng.integers(0, items.size, repeated.size).tolist()):
            items[a], items[b] = items[b], items[a]
    raise RuntimeError("could not remove repeated pairs; degrees too skewed")


def random_codes(n: int, length: int, alphabet: str, rng: np.random.Generator) -> list[str]:
    """``n`` distinct random strings of ``length`` characters from ``alphabet``."""
    table = np.frombuffer(alphabet.encode(), dtype=np.uint8)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        need = n - len(out)
        raw = table[rng.integers(0, table.size, (need, length))].tobytes()
        for k in range(need):
            code = raw[k * length : (k + 1) * length].decode()
            if code not in seen:
                seen.add(code)
                out.append(code)
    return out


_SYLLABLES = (
    "ka ro mi tan vel or is un gar pla ste dra qu zen lo fa ber con tra sil mor ven ex ap "
    "ran dor hel li ti na ge ob ur sha cri mon pex al ter bo lin da vor es im pu re sa"
)
_COMMON = (
    "the a and of to in is it for with this game you that on was are your as but not play can "
    "be have great fun all so my just one very good like get more out time when if will graphics "
    "story controller level player players mode online new best from up really bought price "
    "console edition works well love kids price quality free multiplayer campaign easy hard"
)
_NON_ASCII = [
    "café",
    "Pokémon",
    "naïve",
    "Señor",
    "über",
    "™",
    "®",
    "—",
    "–",
    "’s",
    "日本語版",
    "Ω",
    "½",
    "♥",
]
_ENTITIES = ["&amp;", "&quot;", "&#39;", "&nbsp;", "&lt;3", "&reg;", "&trade;"]
_EMOJI = ["\U0001f600", "\U0001f44d", "\u2665", "\u2605\u2605\u2605\u2605\u2606", "\U0001f3ae"]


def vocabulary(rng: np.random.Generator, size: int = 6000) -> tuple[list[str], np.ndarray]:
    """Pseudo-words plus common words, with Zipf-like sampling weights."""
    common, syllables = _COMMON.split(), _SYLLABLES.split()
    words = set(common)
    while len(words) < size:
        words.add("".join(rng.choice(syllables, rng.integers(1, 4))))
    ordered = common + sorted(words - set(common))
    weights = 1.0 / (np.arange(len(ordered)) + 5.0)
    return ordered, weights / weights.sum()


def sentence_pool(rng: np.random.Generator, n: int, flavour: str) -> list[str]:
    """``n`` sentences of 3-30 words; ``amazon`` ones carry HTML entities and tags, ``steam`` ones
    apostrophes, quotes, emoji and line breaks; both some non-ASCII words."""
    words, weights = vocabulary(rng)
    picks = rng.choice(len(words), size=(n, 30), p=weights)
    lengths = rng.integers(3, 31, n)
    out = []
    for row, length, r in zip(picks, lengths, rng.random((n, 6))):
        parts = [words[k] for k in row[:length]]
        if r[0] < 0.05:
            parts[rng.integers(len(parts))] = str(rng.choice(_NON_ASCII))
        if flavour == "amazon":
            if r[1] < 0.08:
                parts.insert(rng.integers(len(parts)), str(rng.choice(_ENTITIES)))
            if r[2] < 0.04:
                parts = ["<b>", *parts, "</b>"] if r[3] < 0.5 else [*parts, "<br>"]
        else:
            if r[1] < 0.15:
                parts[rng.integers(len(parts))] = str(rng.choice(["it's", "don't", "I'm", "can't", "it's"]))
            if r[2] < 0.05:
                parts.insert(rng.integers(len(parts)), '"' + words[row[0]] + '"')
            if r[3] < 0.03:
                parts.append(str(rng.choice(_EMOJI)))
            if r[4] < 0.005:
                parts.append("\\o/")
        text = " ".join(parts)
        text = text[0].upper() + text[1:] + ("." if r[5] < 0.8 else "!" if r[5] < 0.93 else "?")
        if flavour == "steam" and r[4] > 0.97:
            text += "\n"
        out.append(text)
    return out


def _done_file(folder: Path) -> Path:
    """The generation record, beside (not inside) the folder, which holds only the published files."""
    return folder.with_name(folder.name + ".generated.json")


def _cached(folder: Path) -> dict[str, Any] | None:
    path = _done_file(folder)
    if path.exists():
        record = json.loads(path.read_text())
        if record.get("generator_version") == GENERATOR_VERSION:
            return record
    return None


# ---- Amazon Video_Games -----------------------------------------------------------------------


def amazon_sizes(scale: float) -> dict[str, int]:
    return {k: max(50, round(v * scale)) for k, v in AMAZON.items()}


def _image(code: str, variant: str, hi_res: bool) -> dict[str, Any]:
    base = f"https://m.media-amazon.com/images/I/{code}"
    return {
        "thumb": f"{base}._SS40_.jpg",
        "large": f"{base}.jpg",
        "variant": variant,
        "hi_res": f"{base}._SL1500_.jpg" if hi_res else None,
    }


def generate_amazon(folder: Path, scale: float, seed: int) -> dict[str, Any]:
    """Write ``Video_Games.csv`` (a true 5-core) and ``meta_Video_Games.jsonl`` into ``folder``."""
    import polars as pl

    sizes = amazon_sizes(scale)
    rng = np.random.default_rng(seed)
    n_users, n_items, n_ratings = sizes["users"], sizes["items"], sizes["ratings"]
    user_deg = heavy_tail_degrees(n_users, n_ratings, 5, 2.2, min(1_000, n_items // 2), rng)  # (U,)
    item_deg = heavy_tail_degrees(n_items, n_ratings, 5, 1.6, n_users // 10, rng)  # (I,)
    users, items = simple_bipartite(user_deg, item_deg, rng)  # (N,), (N,)
    user_ids = ["A" + c for c in random_codes(n_users, 27, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", rng)]
    asins = [
        "B0" + c for c in random_codes(sizes["meta_items"], 8, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", rng)
    ]
    # timestamps (ms) 2000..2023, skewed to recent years; ratings mostly 5
    start, end = 946_684_800_000, 1_693_526_400_000
    stamps = start + (rng.beta(3.0, 1.2, n_ratings) * (end - start)).astype(np.int64)
    ratings = rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], n_ratings, p=[0.07, 0.05, 0.09, 0.17, 0.62])
    order = rng.permutation(n_ratings)  # file order: shuffled (the harder case for prepare)
    folder.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {
            "user_id": pl.Series(user_ids).gather(users[order]),
            "parent_asin": pl.Series(asins[:n_items]).gather(items[order]),
            "rating": ratings[order],
            "timestamp": stamps[order],
        }
    ).write_csv(folder / "Video_Games.csv")

    # metadata: every rated item plus unrated ones, in random order, ~3.2 KB per line on average
    pool = sentence_pool(rng, 40_000, "amazon")
    pool_bytes = np.array([len(s.encode()) for s in pool])
    stores = [" ".join(s.split()[:3]).rstrip(".!?") for s in pool[:3000]]
    platforms = ["PlayStation 4", "PlayStation 5", "Xbox One", "Xbox Series X", "Nintendo Switch", "PC"]
    target_mean = sizes["meta_bytes"] / sizes["meta_items"]
    targets = rng.lognormal(np.log(target_mean) - 0.245, 0.7, sizes["meta_items"])  # mean = target_mean
    targets *= sizes["meta_bytes"] / targets.sum()  # the published total, to the byte or so
    debt = 0.0
    image_codes = iter(
        random_codes(
            sizes["meta_items"] * 9,
            9,
            "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+-",
            rng,
        )
    )
    written = 0
    with open(folder / "meta_Video_Games.jsonl", "wb") as fh:
        for line_no, k in enumerate(rng.permutation(sizes["meta_items"])):
            r = rng.random(8).tolist()
            platform = platforms[int(r[0] * len(platforms))]
            title_words = pool[rng.integers(len(pool))].rstrip(".!?").split()[: rng.integers(3, 12)]
            obj: dict[str, Any] = {
                "main_category": "Video Games"
                if r[1] < 0.8
                else ("All Electronics" if r[1] < 0.95 else None),
                "title": " ".join(title_words) + f" - {platform}",
                "average_rating": round(1 + 4 * r[2] ** 0.4, 1),
                "rating_number": int(rng.lognormal(3, 2)) + 1,
                "features": [pool[j] for j in rng.integers(0, len(pool), rng.integers(0, 9))],
                "description": [],
                "price": round(float(rng.lognormal(3, 0.8)), 2) if r[3] < 0.6 else None,
                "images": [
                    _image(next(image_codes) + "L", "MAIN" if i == 0 else f"PT{i:02d}", r[4] < 0.7)
                    for i in range(rng.integers(0, 9))
                ],
                "videos": [
                    {
                        "title": pool[rng.integers(len(pool))][:60],
                        "url": f"https://www.amazon.com/vdp/{next(image_codes)}{next(image_codes)}",
                        "user_id": "",
                    }
                    for _ in range(rng.integers(0, 3) if r[5] < 0.3 else 0)
                ],
                "store": stores[rng.integers(len(stores))],
                "categories": ["Video Games", platform, "Games"][: rng.integers(0, 4)],
                "details": {
                    "Release date": f"{['January', 'March', 'June', 'October'][int(r[6] * 4)]} {1 + int(r[7] * 28)}, {2005 + int(r[0] * 18)}",
                    "Rated": ["Everyone", "Teen", "Mature", "Rating Pending"][int(r[2] * 4)],
                    "Product Dimensions": f"{r[3] * 10:.2f} x {r[4] * 7:.2f} x 0.6 inches; {r[5] * 9:.2f} ounces",
                    "Type of item": "Video Game",
                    "Language": "English",
                    "Item model number": asins[k][2:],
                    "Manufacturer": stores[rng.integers(len(stores))],
                    "Best Sellers Rank": {
                        "Video Games": int(rng.integers(1, 200_000)),
                        platform + " Games": int(rng.integers(1, 9_000)),
                    },
                    "Is Discontinued By Manufacturer": "No",
                },
                "parent_asin": asins[k],
                "bought_together": None,
            }
            base = len(json.dumps(obj, ensure_ascii=False).encode()) + 1
            want = targets[line_no] + debt - base
            while want > 0:  # description paragraphs of a few sentences, some with <br> breaks
                picks = rng.integers(0, len(pool), rng.integers(1, 6))
                obj["description"].append(("<br>" if r[6] < 0.2 else " ").join(pool[j] for j in picks))
                want -= pool_bytes[picks].sum() + 4 * len(picks) + 4
            line = json.dumps(obj, ensure_ascii=False).encode() + b"\n"  # published style: ", " and ": "
            debt += targets[line_no] - len(line)
            written += len(line)
            fh.write(line)
    return {
        "ratings": n_ratings,
        "users": n_users,
        "items": n_items,
        "meta_items": sizes["meta_items"],
        "meta_bytes": written,
        "max_user_ratings": int(user_deg.max()),
        "max_item_ratings": int(item_deg.max()),
    }


# ---- Steam ----------------------------------------------------------------------------------


def steam_sizes(scale: float) -> dict[str, int]:
    return {k: max(50, round(v * scale)) for k, v in STEAM.items()}


def py2_str(value: str) -> str:
    """Python 2's ``repr`` of a unicode string: ``u'..'`` (``u".."`` when it holds only ``'``),
    non-ASCII written as ``\\xe9``, ``\\u2665``, ``\\U0001f600``; Python 3's ``ascii`` writes the same."""
    return "u" + ascii(str(value))  # str(): numpy strings would print as np.str_(...)


def _game_line(rng: np.random.Generator, game_id: str | None, title: str, pool: list[str]) -> str:
    genres = [
        "Action",
        "Adventure",
        "Casual",
        "Indie",
        "RPG",
        "Simulation",
        "Strategy",
        "Free to Play",
        "Racing",
        "Sports",
    ]
    tags = genres + [
        "Multiplayer",
        "Open World",
        "Pixel Graphics",
        "Co-op",
        "Horror",
        "Survival",
        "Puzzle",
        "2D",
        "Anime",
    ]
    specs = [
        "Single-player",
        "Multi-player",
        "Steam Achievements",
        "Steam Trading Cards",
        "Full controller support",
        "Downloadable Content",
    ]
    url_name = "".join(c for c in title.replace(" ", "_") if c.isascii() and (c.isalnum() or c == "_"))
    fields = []
    if rng.random() < 0.9:
        fields.append(f"u'publisher': {py2_str(pool[rng.integers(len(pool))].split('.')[0][:30])}")
    fields.append(
        "u'genres': ["
        + ", ".join(py2_str(g) for g in rng.choice(genres, rng.integers(1, 5), replace=False))
        + "]"
    )
    fields.append(f"u'app_name': {py2_str(title)}")
    if rng.random() < 0.7:
        fields.append(
            f"u'sentiment': {py2_str(str(rng.choice(['Very Positive', 'Mixed', 'Mostly Positive', '3 user reviews'])))}"
        )
    fields.append(f"u'title': {py2_str(title.replace('&', '&amp;') if rng.random() < 0.5 else title)}")
    gid = game_id or str(rng.integers(10_000, 999_999))
    fields.append(f"u'url': u'http://store.steampowered.com/app/{gid}/{url_name}/'")
    fields.append(
        f"u'release_date': u'{rng.integers(2005, 2019)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}'"
    )
    fields.append(
        "u'tags': ["
        + ", ".join(py2_str(t) for t in rng.choice(tags, rng.integers(1, 15), replace=False))
        + "]"
    )
    fields.append(
        f"u'reviews_url': u'http://steamcommunity.com/app/{gid}/reviews/?browsefilter=mostrecent&p=1'"
    )
    fields.append(
        "u'specs': ["
        + ", ".join(py2_str(s) for s in rng.choice(specs, rng.integers(1, 6), replace=False))
        + "]"
    )
    fields.append(
        f"u'price': {round(float(rng.lognormal(2, 1)), 2) if rng.random() < 0.85 else py2_str('Free to Play')}"
    )
    fields.append(f"u'early_access': {rng.random() < 0.1}")
    if game_id is not None:
        fields.append(f"u'id': u'{game_id}'")
    fields.append(f"u'developer': {py2_str(pool[rng.integers(len(pool))].split('.')[0][:30])}")
    return "{" + ", ".join(fields) + "}\n"


def _gzip_writer(path: Path) -> tuple[subprocess.Popen[bytes], Any]:
    """A ``gzip -6`` process writing ``path``; compression runs on another core than generation."""
    out = open(path, "wb")  # noqa: SIM115 - closed by the caller after the process ends
    proc = subprocess.Popen(["gzip", "-6", "-c"], stdin=subprocess.PIPE, stdout=out)
    return proc, out


def generate_steam(folder: Path, scale: float, seed: int) -> dict[str, Any]:
    """Write ``steam_reviews.json.gz`` and ``steam_games.json.gz`` into ``folder``."""
    sizes = steam_sizes(scale)
    rng = np.random.default_rng(seed)
    pool = sentence_pool(rng, 60_000, "steam")
    folder.mkdir(parents=True, exist_ok=True)

    # games: distinct numeric ids; 2% of the reviewed games have no line, 2 lines have no id
    n_games, n_items = sizes["games"], min(sizes["items"], sizes["games"])
    n_absent = n_items // 50
    ids = [str(x) for x in rng.choice(np.arange(10, 1_000_000), n_games + n_absent, replace=False)]
    reviewed_ids = [ids[j] for j in rng.permutation(n_items)]  # by popularity rank: absent ones anywhere
    listed = ids[n_absent:]  # the games file: every id but ids[:n_absent] (reviewed, no metadata)
    titles = [pool[j].rstrip(".!?\n")[:70].title() for j in rng.integers(0, len(pool), n_games)]
    for j in rng.choice(n_games, n_games // 50, replace=False):
        titles[j] = titles[j].replace(" ", "'s ", 1)  # apostrophes -> u"..." literals
    without_id = set(
        rng.choice(np.arange(n_items, n_games), min(2, n_games - n_items), replace=False).tolist()
    )
    lines = [
        _game_line(rng, None if j in without_id else listed[j], titles[j], pool)
        for j in rng.permutation(n_games).tolist()
    ]
    proc, out = _gzip_writer(folder / "steam_games.json.gz")
    assert proc.stdin is not None
    proc.stdin.write("".join(lines).encode())
    proc.stdin.close()
    proc.wait()
    out.close()

    # reviews: users with heavy-tailed counts, games by Zipf popularity, grouped by game as scraped
    n_lines, n_users = sizes["reviews"], sizes["users"]
    n_dup, n_no_name = n_lines // 300, n_lines // 200  # repeated lines; lines with only user_id
    n_edges = n_lines - n_dup - n_no_name
    user_deg = heavy_tail_degrees(n_users, n_edges, 1, 1.6, 3_000, rng)  # (U,)
    users = rng.permutation(np.repeat(np.arange(n_users), user_deg))  # (E,)
    popularity = 1.0 / (np.arange(n_items) + 20.0) ** 1.1
    items = rng.choice(n_items, n_edges, p=popularity / popularity.sum())  # (E,)
    users = np.concatenate([users, np.full(n_no_name, -1)])  # -1: user_id only
    items = np.concatenate([items, rng.choice(n_items, n_no_name)])
    days = rng.beta(4.0, 1.3, users.size)  # 2010-10-15 .. 2018-01-04, skewed recent
    first_day, n_days = np.datetime64("2010-10-15"), 2_638
    dates = [str(first_day + np.timedelta64(d, "D")) for d in range(n_days)]
    day = (days * (n_days - 1)).astype(np.int64)
    order = np.lexsort((-day, items))  # by game, newest first: the scraping order
    dup_at = set(rng.choice(order.size, n_dup, replace=False).tolist())
    names = [
        f"{pool[j].split()[0][:12]}{'_' if j % 3 else ''}{np.base_repr(i, 36).lower()}"
        for i, j in enumerate(rng.integers(0, len(pool), n_users))
    ]
    for i in rng.choice(n_users, n_users // 40, replace=False):
        names[i] = "O'" + names[i]
    names_lit = [py2_str(n) for n in names]
    n_sentences = np.minimum(rng.geometric(0.22, users.size) - 1, 60)  # mean ~3.5 sentences
    sentence_idx = rng.integers(0, len(pool), int(n_sentences.sum()))
    text_start = np.concatenate([[0], np.cumsum(n_sentences)])
    hours = np.round(rng.lognormal(2.0, 1.8, users.size), 1)
    products = rng.lognormal(4, 1.2, users.size).astype(np.int64) + 1
    pages = rng.geometric(0.05, users.size)
    page_order = rng.integers(0, 10, users.size)
    extra = rng.random((users.size, 3))
    proc, out = _gzip_writer(folder / "steam_reviews.json.gz")
    assert proc.stdin is not None
    batch: list[str] = []
    written = 0
    for pos, e in enumerate(order.tolist()):
        u, r = int(users[e]), extra[e]
        head = f"{{u'username': {names_lit[u]}, " if u >= 0 else ""
        if u < 0 or r[0] < 0.08:
            head = (
                f"{{u'user_id': u'765611980{e:08d}', "
                if u < 0
                else head + f"u'user_id': u'765611980{u:08d}', "
            )
        text = " ".join(pool[j] for j in sentence_idx[text_start[e] : text_start[e + 1]])
        funny = f"u'found_funny': {1 + int(r[1] * 20)}, " if r[1] < 0.05 else ""
        comp = ", u'compensation': u'Product received for free'" if r[2] < 0.03 else ""
        line = (
            f"{head}u'hours': {hours[e]}, u'products': {products[e]}, u'product_id': u'{reviewed_ids[items[e]]}', "
            f"{funny}u'page_order': {page_order[e]}, u'date': u'{dates[day[e]]}', u'text': {py2_str(text)}, "
            f"u'early_access': {r[2] > 0.9}, u'page': {pages[e]}{comp}}}\n"
        )
        batch.append(line)
        if pos in dup_at:
            batch.append(line)
        if len(batch) >= 20_000:
            data = "".join(batch).encode()
            written += len(data)
            proc.stdin.write(data)
            batch = []
    data = "".join(batch).encode()
    written += len(data)
    proc.stdin.write(data)
    proc.stdin.close()
    proc.wait()
    out.close()
    return {
        "review_lines": n_edges + n_no_name + n_dup,
        "repeated_lines": n_dup,
        "lines_without_username": n_no_name,
        "users": n_users,
        "reviewed_games": n_items,
        "reviewed_games_without_metadata": n_absent,
        "game_lines": n_games,
        "reviews_uncompressed_bytes": written,
    }


def ensure_generated(which: str, workdir: Path, scale: float, seed: int) -> tuple[Path, dict[str, Any]]:
    """The folder of generated inputs, generating them first unless cached; and the generation record."""
    folder = workdir / f"{which}-scale{scale:g}-seed{seed}"
    record = _cached(folder)
    if record is not None:
        return folder, record
    if folder.exists():
        shutil.rmtree(folder)
    started = time.perf_counter()
    generate = generate_amazon if which == "amazon" else generate_steam
    counts = generate(folder, scale, seed)
    record = {"generator_version": GENERATOR_VERSION, "seconds": time.perf_counter() - started, **counts}
    _done_file(folder).write_text(json.dumps(record, indent=2))
    return folder, record


# ---- measuring --------------------------------------------------------------------------------


def read_lines(paths: list[Path]) -> tuple[float, int]:
    """The I/O floor: seconds to gunzip (where .gz) and read the files line by line; lines read."""
    started = time.perf_counter()
    n = 0
    for path in paths:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            for _ in fh:
                n += 1
    return time.perf_counter() - started, n


def _tree(pid: int) -> Iterator[int]:
    yield pid
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                for child in fh.read().split():
                    yield from _tree(int(child))
    except OSError:
        return


def _pss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_prepare(args: list[str], log_path: Path) -> dict[str, Any]:
    """Run ``hstu-blair prepare ARGS`` in a subprocess: wall, CPU, peak RSS, sampled tree PSS."""
    beside = Path(sys.executable).with_name("hstu-blair")  # the CLI of this environment
    exe = str(beside) if beside.exists() else shutil.which("hstu-blair") or "hstu-blair"
    cmd = [exe, "prepare", *args]
    load_before = os.getloadavg()
    peak_pss = 0
    with open(log_path, "w") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak_pss
            while not stop.wait(0.25):
                peak_pss = max(peak_pss, sum(_pss_bytes(p) for p in _tree(proc.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        stop.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(
            f"prepare failed ({proc.returncode}); see {log_path}:\n{log_path.read_text()[-3000:]}"
        )
    return {
        "command": " ".join(["hstu-blair", "prepare", *args]),
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_gb": usage.ru_maxrss * 1024 / 1e9,  # ru_maxrss is in KiB on Linux
        "peak_tree_pss_gb": peak_pss / 1e9,
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }


def _size(path: Path) -> str:
    return f"{path.name} {path.stat().st_size / 1e6:,.1f} MB"


def _ratio(value: float, goal: float, unit: str) -> str:
    return f"{value:.1f} {unit} = {value / goal:.2f} x goal {goal:g} {unit}"


def bench_amazon(workdir: Path, scale: float, seed: int, keep: bool) -> dict[str, Any]:
    folder, gen = ensure_generated("amazon", workdir, scale, seed)
    inputs = [folder / "Video_Games.csv", folder / "meta_Video_Games.jsonl"]
    print(f"\n== Amazon Video_Games (scale {scale:g}) ==")
    print(
        f"inputs     {', '.join(_size(p) for p in inputs)}; generated in {gen['seconds']:.1f} s (not counted)"
    )
    base_s, base_lines = read_lines(inputs)
    print(
        f"baseline   read {base_lines:,} lines in {base_s:.2f} s (I/O floor; load {os.getloadavg()[0]:.2f})"
    )
    out = workdir / "out-amazon"
    result = run_prepare(
        ["amazon2023", "--input", str(folder), "--out", str(out)], workdir / "prepare-amazon.log"
    )
    manifest = json.loads((out / "manifest.json").read_text())
    goal = GOALS["amazon"]
    print(f"command    {result['command']}")
    print(
        f"prepare    wall {_ratio(result['wall_s'], goal['wall_s'], 's')} = {result['wall_s'] / base_s:.1f} x baseline; "
        f"CPU {result['cpu_s']:.1f} s; peak RSS {_ratio(result['peak_rss_gb'], goal['rss_gb'], 'GB')} "
        f"(tree PSS {result['peak_tree_pss_gb']:.2f} GB); load avg {result['load_avg_before'][0]} -> {result['load_avg_after'][0]}"
    )
    got = (manifest["num_users"], manifest["num_items"], manifest["num_interactions"])
    want = (gen["users"], gen["items"], gen["ratings"])
    print(
        f"counts     users {got[0]:,}, items {got[1]:,}, interactions {got[2]:,} "
        f"({'match' if got == want else 'MISMATCH, expected ' + str(want)} the generated 5-core)"
    )
    if not keep:
        shutil.rmtree(out)
    return {
        "generated": gen,
        "baseline_s": base_s,
        "prepare": result,
        "counts": dict(zip(("users", "items", "interactions"), got)),
        "match": got == want,
    }


def bench_steam(workdir: Path, scale: float, seed: int, keep: bool) -> dict[str, Any]:
    folder, gen = ensure_generated("steam", workdir, scale, seed)
    inputs = [folder / "steam_reviews.json.gz", folder / "steam_games.json.gz"]
    print(f"\n== Steam (scale {scale:g}) ==")
    print(
        f"inputs     {', '.join(_size(p) for p in inputs)} ({gen['reviews_uncompressed_bytes'] / 1e9:.2f} GB of "
        f"review lines uncompressed); generated in {gen['seconds']:.1f} s (not counted)"
    )
    base_s, base_lines = read_lines(inputs)
    print(
        f"baseline   gunzip + read {base_lines:,} lines in {base_s:.2f} s (I/O floor; load {os.getloadavg()[0]:.2f})"
    )
    goal = GOALS["steam"]
    runs = {}
    for label, extra in (("--no-reviews", ["--no-reviews"]), ("with reviews", [])):
        out = workdir / f"out-steam{'-noreviews' if extra else ''}"
        result = run_prepare(
            ["steam", "--input", str(folder), "--out", str(out), *extra],
            workdir / f"prepare-steam{extra and '-noreviews' or ''}.log",
        )
        manifest = json.loads((out / "manifest.json").read_text())
        result["counts"] = {k: manifest[f"num_{k}"] for k in ("users", "items", "interactions", "reviews")}
        meets = result["wall_s"] <= goal["wall_s"]
        print(f"command    {result['command']}")
        print(
            f"prepare    {label}: wall {_ratio(result['wall_s'], goal['wall_s'], 's')} = {result['wall_s'] / base_s:.1f} x baseline "
            f"({'meets' if meets else 'MISSES'} the 5-min goal); CPU {result['cpu_s']:.1f} s; peak RSS {result['peak_rss_gb']:.2f} GB "
            f"(tree PSS {result['peak_tree_pss_gb']:.2f} GB); load avg {result['load_avg_before'][0]} -> {result['load_avg_after'][0]}"
        )
        c = result["counts"]
        print(
            f"counts     users {c['users']:,}, items {c['items']:,}, interactions {c['interactions']:,}, reviews {c['reviews']:,}"
        )
        runs[label] = result
        if not keep:
            shutil.rmtree(out)
    return {"generated": gen, "baseline_s": base_s, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--which", choices=["amazon", "steam", "both"], default="both")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the real sizes (quick runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workdir", type=Path, default=DEFAULT_WORKDIR, help="generated inputs (cached) and outputs"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the prepared output directories (the generated inputs are always kept, as the cache)",
    )
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPUs; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results: dict[str, Any] = {"scale": args.scale, "seed": args.seed, "cpus": os.cpu_count()}
    if args.which in ("amazon", "both"):
        results["amazon"] = bench_amazon(args.workdir, args.scale, args.seed, args.keep)
    if args.which in ("steam", "both"):
        results["steam"] = bench_steam(args.workdir, args.scale, args.seed, args.keep)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
