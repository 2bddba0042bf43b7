"""Evaluate: ``python launch/evaluate.py CONFIG checkpoint=PATH [key=value ...]`` or under torchrun."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rcdml.cli.evaluate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
