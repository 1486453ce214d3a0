"""Entry script of the bundle's ``mirage-models`` executable: the model manager without the window."""

import sys

from mirage_desktop.models.cli import main

if __name__ == "__main__":
    sys.exit(main())
