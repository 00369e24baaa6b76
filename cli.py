"""Entry point: `python cli.py fit|validate|test|predict|export|import ...` (same as the installed `translate`)."""
import sys

from translate.cli import main

if __name__ == "__main__":
    sys.exit(main())
