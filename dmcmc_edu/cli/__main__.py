"""``python -m dmcmc_edu.cli ...``: the same as ``python -m dmcmc_edu ...``."""

import sys

from dmcmc_edu.cli import main

sys.exit(main())
