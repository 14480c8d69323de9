"""``hstu-blair`` command line: each subcommand parses arguments, calls one API function, prints a summary.

Subcommands live in modules by stage (``data``, ``text``, ``runs``, ``serve``, ``store``, ``versions``, ``reports``); each
registers its parsers and handlers. Handlers call the public API (``hstu_blair.train`` ...), which
is imported on first use, so data commands never load torch.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from hstu_blair._version import __version__
from hstu_blair.cli import data, reports, runs, serve, store, text, versions
from hstu_blair.errors import HstuBlairError

Handler = Callable[[argparse.Namespace], int]

COMMANDS: list[Callable[[argparse._SubParsersAction], object]] = [
    data.add_prepare,
    data.add_stats,
    data.add_download,
    text.add_embed_parser,
    text.add_pretrain_parser,
    runs.add_train,
    runs.add_evaluate,
    runs.add_cold_start,
    runs.add_convert,
    runs.add_fusions,
    serve.add_recommend_parser,
    serve.add_serve_parser,
    store.add_events_parser,
    store.add_check_parser,
    versions.add_update,
    versions.add_rollback,
    versions.add_temporal_study,
    runs.add_reproduce,
    runs.add_tune,
    runs.add_init_config,
    reports.add_report,
    reports.add_compare,
    reports.add_select,
]
"""Every subcommand's parser builder, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The ``hstu-blair`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="hstu-blair",
        description="Text-enhanced generative sequential recommendation (HSTU, HSTU-BLaIR, SASRec).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code.

    Errors the package raises on purpose (bad input, bad config, unknown ids: ``HstuBlairError``)
    print one line and exit with 2; anything else is a bug and shows its traceback.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except HstuBlairError as exc:
        print(f"hstu-blair {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
