"""``python -m swiftcuda`` runs the command line."""

import sys

from swiftcuda.cli import main

sys.exit(main())
