"""``python -m horq ...`` (what ``torchrun -m horq train ...`` runs in every process)."""

import sys

from horq.apps.cli import main

sys.exit(main())
