"""The `memlake` command line: parser.py (arguments), main.py (dispatch), facts.py,
privacy.py and auth.py (their command groups), format.py (output helpers)."""

from memlake.cli.main import main, run
from memlake.cli.parser import EPILOG, build_parser

__all__ = ["EPILOG", "build_parser", "main", "run"]
