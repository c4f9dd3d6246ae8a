"""Copy figures of run reports into docs/images as small palette PNGs.

Usage: python scripts/docs_figures.py SOURCE.png:NAME.png [SOURCE.png:NAME.png ...]
       [--colors 128] [--max-width 900] [--out docs/images]

The report figures are RGBA PNGs of 20-150 KB; quantised to a 128-colour palette (exact for grey
digits and binary sprites, close for the hue sequences) they take a third of that, which keeps
the committed pictures of docs/results.md at a few hundred kilobytes in all.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image


def compact_png(source: Path, target: Path, colors: int = 128, max_width: int = 900) -> int:
    """Write ``source`` as a ``colors``-colour palette PNG at most ``max_width`` pixels wide at
    ``target``; return its size in bytes."""
    with Image.open(source) as image:
        rgb = image.convert("RGB")
    if rgb.width > max_width:
        height = round(rgb.height * max_width / rgb.width)
        rgb = rgb.resize((max_width, height), Image.Resampling.LANCZOS)
    palette = rgb.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.png")
    palette.save(tmp, optimize=True)
    tmp.replace(target)
    return target.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", metavar="SOURCE.png:NAME.png")
    parser.add_argument("--colors", type=int, default=128)
    parser.add_argument("--max-width", type=int, default=900)
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args(argv)
    total = 0
    for pair in args.pairs:
        source, sep, name = pair.rpartition(":")
        if not sep or not source or not name.endswith(".png"):
            parser.error(f"expected SOURCE.png:NAME.png, got {pair!r}")
        if not Path(source).is_file():
            parser.error(f"{source} is not a file")
        size = compact_png(Path(source), args.out / name, args.colors, args.max_width)
        total += size
        print(f"{args.out / name}: {size / 1024:.0f} KB")
    print(f"total {total / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
