"""Rewrite the README's measured blocks from the stored results (issue 18): prose that is printed, not typed.

    python bench/readme_numbers.py            # rewrite the blocks in README.md (atomically)
    python bench/readme_numbers.py --check    # exit 1 if README.md differs from what the data say now

The blocks lie between ``<!-- measured:NAME -->`` and ``<!-- /measured:NAME -->`` lines;
``dmcmc_edu.experiments.overview.readme_blocks`` prints their text from ``bench/results``.  A README without a
block's markers is refused in one line.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from dmcmc_edu.experiments.overview import readme_blocks
from dmcmc_edu.runs import atomic_write

ROOT = Path(__file__).resolve().parents[1]


def fill(text: str, blocks: dict[str, str], path: str = "README.md") -> str:
    """``text`` with every measured block replaced by its new content (ValueError if a block has no markers)."""
    for name, body in blocks.items():
        pat = re.compile(rf"(<!-- measured:{name} -->\n).*?(\n<!-- /measured:{name} -->)", re.S)
        if not pat.search(text):
            raise ValueError(f"{path}: no '<!-- measured:{name} -->' ... '<!-- /measured:{name} -->' block")
        text = pat.sub(lambda m, body=body: m.group(1) + body + m.group(2), text)
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true")
    p.add_argument("--readme", default=str(ROOT / "README.md"))
    args = p.parse_args(argv)
    path = Path(args.readme)
    old = path.read_text()
    try:
        new = fill(old, readme_blocks(ROOT / "bench" / "results"), str(path))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.check:
        print("README.md agrees with the data" if new == old else "README.md differs from the data")
        return 0 if new == old else 1
    if new != old:
        atomic_write(path, lambda tmp: Path(tmp).write_text(new))
    print("README.md updated" if new != old else "README.md unchanged")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
