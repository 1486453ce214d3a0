"""``python -m mirage_desktop.models`` runs ``mirage-models``."""

import sys

from mirage_desktop.models.cli import main

sys.exit(main())
