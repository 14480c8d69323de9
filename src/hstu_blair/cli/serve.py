"""``recommend`` and ``serve``: the serving subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import hstu_blair as hb
from hstu_blair.cli.store import STORE_HELP
from hstu_blair.errors import HstuBlairError
from hstu_blair.serving import INDEXES
from hstu_blair.serving.export import check_format, read_user_ids
from hstu_blair.serving.item_filter import ItemFilter, as_filter
from hstu_blair.serving.limits import (
    BATCH_WINDOW_MS,
    BODY_BYTES,
    HOST,
    KIB,
    MAX_BATCH,
    MIB,
    PORT,
    ConnectionLimits,
    Limits,
    parse_size,
)
from hstu_blair.serving.queries import Recommendations


def add_recommend_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``recommend RUN_DIR --user ID | --history IDS | --similar ID | --all-users --out FILE``."""
    p = sub.add_parser(
        "recommend",
        help="print recommendations of a trained run for a user or a history, or export every user's",
        description=(
            "Load a run directory and print the top-k items (item ids, titles, scores) for a user of the "
            "training data (their full history plus their events in the run's store), for a "
            "comma-separated history of item ids (oldest "
            "first; the most recent data.max_len are encoded), or the items most similar to one item. "
            "The store is only read (opened read-only; none is created, nothing is migrated). "
            "--filter keeps only the items a filter allows, e.g. "
            '\'{"where": {"in_stock": true, "category": ["Books", "Games"], "price": {"max": 20}}, '
            '"exclude": ["id3"]}\' (keys allow, exclude, where; see the README\'s Filters). '
            "--explain adds under each item the history items that contributed most ('because: ...'). "
            "--all-users --out recs.parquet (or .csv) writes every user's top k (training users and "
            "users known only from the store's events; --users FILE for some) in long format "
            "(user_id, rank, item_id, score, title), batch by batch, with a progress bar on stderr."
        ),
    )
    p.add_argument("run_dir", type=Path, help="run directory written by `hstu-blair train`")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--user", help="user id of the training data")
    what.add_argument("--history", help='comma-separated item ids, oldest first, e.g. "1,50,260"')
    what.add_argument("--similar", metavar="ITEM_ID", help="items whose vectors are closest to this item's")
    what.add_argument(
        "--all-users", action="store_true", help="export every user's recommendations to --out (see --users)"
    )
    p.add_argument("--k", "-k", type=int, default=10, help="number of items (default 10)")
    p.add_argument(
        "--new-user",
        choices=["error", "popular"],
        default="error",
        help="with --user, for a user without any history: error (default, exit 2) or popular "
        "(the items with the most training interactions)",
    )
    p.add_argument("--include-seen", action="store_true", help="allow items of the history in the list")
    p.add_argument(
        "--skip-unknown", action="store_true", help="leave unknown history ids out instead of failing"
    )
    p.add_argument(
        "--filter",
        metavar="JSON",
        help="only items this filter allows: its JSON, or @FILE to read it from a file",
    )
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--explain",
        action="store_true",
        help="name under each item the history items that contributed most, with their weight (score "
        "with the whole history minus score without the item; the last 5 distinct items are tried)",
    )
    export = p.add_argument_group("export (--all-users)")
    export.add_argument("--out", type=Path, help="file to write: .parquet or .csv (by the suffix)")
    export.add_argument(
        "--batch-size",
        type=int,
        default=1024,
        help="users per batch: per model call and Parquet row group (default 1024)",
    )
    export.add_argument(
        "--exclude-seen",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="leave items of each user's history out (default; --no-exclude-seen keeps them)",
    )
    export.add_argument(
        "--users", type=Path, metavar="FILE", help="export these users only: a file of user ids, one a line"
    )
    p.add_argument("--store", help=STORE_HELP)
    p.set_defaults(handler=run_recommend)
    return p


def run_recommend(args: argparse.Namespace) -> int:
    """Handler of ``recommend``: print a table (or JSON) of recommendations; returns 0.

    Raises:
        UnknownIdError: an unknown user or item id (the CLI prints it and exits 2).
    """
    if args.k < 1:
        raise HstuBlairError(f"--k must be at least 1, got {args.k}")
    if args.all_users:
        return run_export(args)
    if args.out is not None or args.users is not None:
        raise HstuBlairError("--out and --users go with --all-users")
    item_filter = read_filter(args.filter)
    exclude_seen = not args.include_seen if args.exclude_seen is None else args.exclude_seen
    rec = hb.Recommender.load(args.run_dir, args.checkpoint, args.device, persist="read", store=args.store)
    if args.user is not None:
        result = rec.recommend_user(
            args.user,
            args.k,
            exclude_seen=exclude_seen,
            new_user=args.new_user,
            filter=item_filter,
            explain=args.explain,
        )
    elif args.similar is not None:
        result = rec.similar_items(args.similar, args.k, filter=item_filter)
    else:
        history = [h.strip() for h in args.history.split(",") if h.strip()]
        result = rec.recommend(
            history,
            args.k,
            exclude_seen=exclude_seen,
            skip_unknown=args.skip_unknown,
            filter=item_filter,
            explain=args.explain,
        )
    if args.json:
        print(json.dumps(result_json(result, args.explain), ensure_ascii=False, indent=2))
        return 0
    width = max([len(r.item_id) for r in result] + [7])
    print(f"{'rank':>4}  {'score':>7}  {'item_id':<{width}}  title")
    for rank, r in enumerate(result, start=1):
        print(f"{rank:>4}  {r.score:>7.4f}  {r.item_id:<{width}}  {r.title}")
        if args.explain and r.reasons:
            print(
                f"{'':>15}because: "
                + ", ".join(f"{x.title or x.item_id} ({x.weight:.2f})" for x in r.reasons)
            )
    if result.skipped:
        print(f"skipped unknown ids: {', '.join(result.skipped)}")
    return 0


def read_filter(value: str | None) -> ItemFilter | None:
    """``--filter``: a filter's JSON, or ``@FILE`` holding it (None: no filter).

    Raises:
        HstuBlairError: the file cannot be read, or the filter is malformed (the field named).
    """
    if value is None:
        return None
    if value.startswith("@"):
        try:
            value = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise HstuBlairError(f"--filter: cannot read {value[1:]}: {exc.strerror or exc}") from None
    try:
        return as_filter(value)
    except HstuBlairError as exc:
        raise HstuBlairError(f"--filter: {exc}") from None


def result_json(result: Recommendations, explain: bool) -> dict[str, Any]:
    """``{"items": [...], "skipped": [...]}``; each item with ``reasons`` when ``explain``."""
    items = []
    for r in result:
        item: dict[str, Any] = {"item_id": r.item_id, "score": r.score, "title": r.title}
        if explain:
            item["reasons"] = [
                {"item_id": x.item_id, "title": x.title, "weight": x.weight} for x in r.reasons
            ]
        items.append(item)
    return {"items": items, "skipped": result.skipped}


def run_export(args: argparse.Namespace) -> int:
    """``recommend --all-users --out FILE``: export, then print what was written; returns 0.

    Raises:
        HstuBlairError: no --out, a suffix other than .parquet/.csv, or --batch-size < 1.
    """
    if args.out is None:
        raise HstuBlairError("--all-users needs --out FILE (.parquet or .csv)")
    check_format(args.out)  # before loading the run
    if args.batch_size < 1:
        raise HstuBlairError(f"--batch-size must be at least 1, got {args.batch_size}")
    exclude_seen = not args.include_seen if args.exclude_seen is None else args.exclude_seen
    users = read_user_ids(args.users) if args.users is not None else None
    item_filter = read_filter(args.filter)  # before loading the run
    rec = hb.Recommender.load(args.run_dir, args.checkpoint, args.device, persist="read", store=args.store)
    with rec:
        s = rec.export_recommendations(args.out, args.k, args.batch_size, exclude_seen, users, item_filter)
    print(
        f"wrote {s.rows:,} rows for {s.users:,} users to {s.path} in {s.seconds:.1f} s "
        f"({s.users_per_s:,.0f} users/s); {s.skipped:,} users without history skipped"
    )
    return 0


LIMIT_FLAGS = {
    "max_k": "largest k accepted",
    "max_history": "longest history of one query, in items",
    "max_queries": "most queries in one /recommend/batch",
    "max_batch_history": "most history items summed over the queries of one request",
    "max_batch_results": "most results (sum of k) over the queries of one request",
    "max_events": "most events in one POST /events",
}
"""The integer fields of :class:`Limits` that ``serve`` takes as ``--max-...`` flags."""


def add_serve_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``serve RUN_DIR [--host] [--port] ...``."""
    p = sub.add_parser(
        "serve",
        help="serve a trained run over HTTP (JSON API, web page, metrics)",
        description=(
            "Serve recommendations of a run directory: POST /recommend, POST /recommend/batch, "
            "GET/POST/PATCH /items (PATCH: item attributes), GET /attributes, GET /similar, POST /events, GET /users/ID/recommendations, DELETE "
            "/users/ID, GET /healthz, GET /metrics (Prometheus), API docs at /docs and a web page at /. "
            "Binds 127.0.0.1 unless --host says otherwise. Items added with POST /items and events "
            "posted to /events are committed to the run's store (RUN_DIR/store.sqlite, or --store) "
            "before the reply, and used by every process serving the same store from its next request "
            "on. Damaged "
            "records are set aside (counted in /healthz, listed by `hstu-blair check`), never stopping "
            "the server. Serves the run's current model version and switches to a new one written by "
            "`hstu-blair update` (or `rollback`) without a restart: loaded in the background, swapped "
            "between requests, every answer from one version (its 'version' field). "
            "With an API key (--api-key or $HSTU_BLAIR_API_KEY), POST /items, POST /events "
            "and DELETE /users/ID need 'Authorization: Bearer KEY' (else 401, checked before the body "
            "is read), and so do reads that reveal a user's history (GET /users/ID/recommendations, "
            "POST /recommend and /recommend/batch by user_id), which also take the read key "
            "(--read-key or $HSTU_BLAIR_READ_KEY: reads, no writes). Other reads stay open (recommend "
            "by a history of item ids, items, similar, /healthz, /metrics, the page), and /healthz "
            "shows filesystem paths and the store's location only to a request carrying the API key. "
            "POST /events stores each event once (event_id, else user, item and timestamp; a batch "
            "with an idempotency_key seen before stores nothing). Binding beyond loopback without a key prints a "
            "warning. Limits are checked before any work: a body above its route's limit is 413 (not "
            "read further); k, history length, queries, events and their sums per request above "
            "their limits are 422 naming the limit. Connections are bounded (--max-connections: beyond it the least "
            "recently active idle one is closed; --request-head-s, --keep-alive-s: idle and slow clients are "
            "closed), and a log message of one kind is written once per --log-repeat-s seconds, the rest "
            "counted in /metrics (hstu_blair_log_suppressed_total)."
        ),
    )
    p.add_argument("run_dir", type=Path, help="run directory written by `hstu-blair train`")
    p.add_argument("--host", default=HOST, help=f"address to bind (default {HOST})")
    p.add_argument("--port", type=int, default=PORT, help=f"port (default {PORT})")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument(
        "--index",
        choices=list(INDEXES),
        default="exact",
        help="top-k search: exact (default) or FAISS for large catalogues (faiss = faiss-ivf)",
    )
    _add_limit_args(p)
    _add_connection_args(p)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument(
        "--api-key",
        metavar="TOKEN",
        help="token the write routes (POST /items, POST /events, DELETE /users/ID) require as 'Authorization: Bearer TOKEN' (default: $HSTU_BLAIR_API_KEY; "
        "prefer the variable, a flag shows in the process list)",
    )
    p.add_argument(
        "--read-key",
        metavar="TOKEN",
        help="token that allows the reads revealing a user's history (GET /users/ID/recommendations, "
        "/recommend by user_id) and no write, for a front end; needs --api-key and must differ from "
        "it (default: $HSTU_BLAIR_READ_KEY; prefer the variable)",
    )
    p.add_argument("--store", help=STORE_HELP)
    p.set_defaults(handler=run_serve)
    return p


def _add_limit_args(p: argparse.ArgumentParser) -> None:
    """The request limits, body sizes, worker threads and batching of ``serve``."""
    defaults = Limits()
    for field, help_text in LIMIT_FLAGS.items():
        p.add_argument(
            f"--{field.replace('_', '-')}",
            type=int,
            default=getattr(defaults, field),
            help=f"{help_text} (default %(default)s)",
        )
    bodies = ", ".join(f"{path}={_size(n)}" for path, n in BODY_BYTES.items())
    p.add_argument(
        "--max-body",
        action="append",
        default=[],
        metavar="ROUTE=SIZE",
        help=f"largest request body of a route, e.g. /recommend/batch=16MiB; 'other' sets every other "
        f"route's (defaults: {bodies}, other={_size(defaults.default_body_bytes)}); repeatable",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=defaults.workers,
        help="threads that prepare and score requests off the event loop (default %(default)s)",
    )
    p.add_argument(
        "--batch-window-ms",
        type=float,
        default=BATCH_WINDOW_MS,
        help=f"wait for concurrent requests to batch (default {BATCH_WINDOW_MS:g})",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=MAX_BATCH,
        help=f"most requests per model call (default {MAX_BATCH}; 1 = no batching)",
    )


CONNECTION_FLAGS = {
    "max_connections": (
        int,
        "most open connections; a new one beyond it closes the least recently active idle one, "
        "or is answered 503 when all are busy (lowered to the file limit, ulimit -n, less 128)",
    ),
    "request_head_s": (
        float,
        "seconds a connection has to send a request's head after it opens or after a response",
    ),
    "keep_alive_s": (int, "seconds an idle connection stays open after a response"),
    "backlog": (int, "connections the kernel queues before they are accepted"),
    "log_repeat_s": (
        float,
        "a log message of one kind is written once per this many seconds (the rest counted in /metrics)",
    ),
}
"""The fields of :class:`ConnectionLimits` that ``serve`` takes as flags (``--max-connections``)."""


def _add_connection_args(p: argparse.ArgumentParser) -> None:
    """What connections may hold, and how often a log line repeats."""
    defaults = ConnectionLimits()
    for field, (kind, help_text) in CONNECTION_FLAGS.items():
        p.add_argument(
            f"--{field.replace('_', '-')}",
            type=kind,
            default=getattr(defaults, field),
            help=f"{help_text} (default %(default)s)",
        )


def connections_of(args: argparse.Namespace) -> ConnectionLimits:
    """The :class:`ConnectionLimits` the ``serve`` flags describe.

    Raises:
        HstuBlairError: a value that is not positive.
    """
    try:
        return ConnectionLimits(**{field: getattr(args, field) for field in CONNECTION_FLAGS})
    except ValueError as exc:
        raise HstuBlairError(str(exc)) from None


def _size(n: int) -> str:
    return f"{n // MIB}MiB" if n % MIB == 0 else f"{n // KIB}KiB" if n % KIB == 0 else str(n)


def limits_of(args: argparse.Namespace) -> Limits:
    """The :class:`Limits` the ``serve`` flags describe.

    Raises:
        HstuBlairError: a --max-body that is not ROUTE=SIZE with a route that takes a body (a typo
            would otherwise change nothing), or a limit that is not positive.
    """
    body_bytes, default_body = dict(BODY_BYTES), Limits().default_body_bytes
    for given in args.max_body:
        route, sep, size = given.partition("=")
        try:
            if not sep or not (route in BODY_BYTES or route == "other"):
                raise ValueError(
                    f"expected ROUTE=SIZE with ROUTE one of the routes that take a body "
                    f"({', '.join(BODY_BYTES)}) or 'other'"
                )
            if route == "other":
                default_body = parse_size(size)
            else:
                body_bytes[route] = parse_size(size)
        except ValueError as exc:
            raise HstuBlairError(f"--max-body {given!r}: {exc}") from None
    try:
        return Limits(
            **{field: getattr(args, field) for field in LIMIT_FLAGS},
            body_bytes=body_bytes,
            default_body_bytes=default_body,
            workers=args.workers,
        )
    except ValueError as exc:
        raise HstuBlairError(str(exc)) from None


def run_serve(args: argparse.Namespace) -> int:
    """Handler of ``serve``: runs the server until interrupted; returns 0."""
    hb.serve(
        args.run_dir,
        host=args.host,
        port=args.port,
        checkpoint=args.checkpoint,
        device=args.device,
        index=args.index,
        batch_window_ms=args.batch_window_ms,
        max_batch=args.max_batch,
        log_level=args.log_level,
        threads=args.threads,
        api_key=args.api_key,
        read_key=args.read_key,
        store=args.store,
        limits=limits_of(args),
        connections=connections_of(args),
    )
    return 0
