"""Entry script of the PyInstaller bundle: the same ``mirage`` command that ``pip install`` puts on the PATH."""

import multiprocessing
import sys

from mirage_desktop.app import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # torch and onnxruntime may spawn helpers; a frozen child must not rerun main()
    sys.exit(main())
