"""Regenerate docs/configuration.md from the settings model (broker/config.py).

    .venv/bin/python scripts/gen_config_reference.py           # rewrite the page
    .venv/bin/python scripts/gen_config_reference.py --check   # exit 1 if it is out of date

Run it after changing a setting; tests/unit/broker/test_config_reference.py fails until then.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from broker.config_reference import render

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only compare; exit 1 when the page differs")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != text:
            print(f"{PAGE} is out of date: run scripts/gen_config_reference.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
