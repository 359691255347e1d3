"""Point the project at another repository (a fork): one command rewrites every place that names it.

The repository address lives in one place, ``reconet_lib.config.REPOSITORY_URL``. Two kinds of text must still
spell it out, because they are read before the library is installed: each notebook's Colab setup cell (its
``REPO = "..."`` line) and the README's Colab badges and install line. This script replaces the address in all of
them at once; ``tests/test_packaging.py`` checks that they agree with ``REPOSITORY_URL``.

    python tools/set_repository.py https://github.com/you/reconet
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_GITHUB = re.compile(r"https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


def current_url() -> str:
    """The address ``reconet_lib/config.py`` names."""
    match = re.search(r'^REPOSITORY_URL = "([^"]+)"', (ROOT / "reconet_lib" / "config.py").read_text(), re.M)
    if not match:
        raise SystemExit("reconet_lib/config.py has no REPOSITORY_URL line")
    return match.group(1)


def files_naming_it() -> list[Path]:
    """config.py, the README and every notebook: the texts that spell out the repository's address."""
    return [ROOT / "reconet_lib" / "config.py", ROOT / "README.md", *sorted((ROOT / "notebooks").glob("*.ipynb"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the new repository, https://github.com/OWNER/NAME")
    args = parser.parse_args(argv)
    new = args.url.rstrip("/").removesuffix(".git")
    if not _GITHUB.fullmatch(new):
        parser.error(f"{args.url!r} is not a GitHub repository address like https://github.com/you/reconet")
    old = current_url()
    colab_old = old.replace("https://github.com/", "https://colab.research.google.com/github/")
    colab_new = new.replace("https://github.com/", "https://colab.research.google.com/github/")
    for path in files_naming_it():
        text = path.read_text(encoding="utf-8")
        changed = text.replace(colab_old, colab_new).replace(old, new)
        if changed != text:
            path.write_text(changed, encoding="utf-8")
            print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
