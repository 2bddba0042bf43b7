"""Embed images: ``python launch/embed.py CONFIG checkpoint=PATH input=DIR out=DIR`` or under torchrun."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rcdml.cli.embed import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
