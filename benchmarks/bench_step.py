"""Print the ``topovae bench`` table: step vs matmul bound, IS speed-up, memory, data time."""

from __future__ import annotations

import argparse
import json

from topovae.bench import format_table, run_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30, help="timed repeats after warm-up")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    args = parser.parse_args()
    result = run_benchmark(repeats=args.repeats, progress=not args.quiet)
    print(json.dumps(result, indent=2) if args.json else format_table(result))


if __name__ == "__main__":
    main()
