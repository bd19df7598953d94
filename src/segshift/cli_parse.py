"""Command-line parsing that accepts options, overrides and inputs in any order.

``segshift eval CFG --checkpoint X data.val.root=...`` and ``segshift predict a.png --checkpoint
C --out D b.png``: argparse's ``parse_args`` stops collecting positionals at the first option
and refuses the rest ("unrecognized arguments"). :func:`parse_command_line` finds the
subcommand (and its own subcommand: ``data check``, ``translate apply``) and parses the rest with
``parse_intermixed_args``, which gathers every positional wherever it stands.

Example::

    >>> args = parse_command_line(build_parser(), ["eval", "cfg.yaml", "--checkpoint", "r",
    ...                                           "data.val.root=v"])
    >>> args.target, args.overrides, args.checkpoint
    ('cfg.yaml', ['data.val.root=v'], 'r')
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def parse_command_line(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """``parser.parse_args(argv)``, but a leaf subcommand's positionals may follow options."""
    words = list(sys.argv[1:] if argv is None else argv)
    leaf, chosen, rest = parser, {}, words
    while (action := _subcommands(leaf)) is not None:
        if not rest or rest[0] not in action.choices:
            return parser.parse_args(words)  # help, a missing or unknown command: as argparse
        chosen[action.dest] = rest[0]
        leaf, rest = action.choices[rest[0]], rest[1:]
    args = leaf.parse_intermixed_args(rest)
    for dest, value in chosen.items():
        setattr(args, dest, value)
    return args
