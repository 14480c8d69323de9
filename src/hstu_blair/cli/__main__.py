"""``python -m hstu_blair.cli ...`` (what ``torchrun -m hstu_blair.cli`` runs)."""

import sys

from hstu_blair.cli import main

sys.exit(main())
