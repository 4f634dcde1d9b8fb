"""``python -m bench [--backend sqlite|postgresql|all]``: every benchmark of issue 7, in order.

Pages, companion service, sync, payout path, webhooks; each prints its figures with target and
ratio and appends them to ``bench/results/latest.jsonl``. Each also runs alone as
``python -m bench.<name>`` with its own size options.
"""

from __future__ import annotations

import argparse
import importlib
import sys

ORDER = ("pages", "charts", "companion", "sync", "payouts", "webhooks", "writes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "all"], default="all")
    args = parser.parse_args(argv)
    failed = []
    for name in ORDER:
        sys.stdout.write(f"== bench.{name}\n")
        sys.stdout.flush()
        module = importlib.import_module(f"bench.{name}")
        if module.main(["--backend", args.backend]) != 0:
            failed.append(name)
    if failed:
        sys.stderr.write(f"bench: {', '.join(failed)} did not finish\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
