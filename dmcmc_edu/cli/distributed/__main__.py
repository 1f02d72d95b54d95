"""``torchrun --nproc_per_node N -m dmcmc_edu.cli.distributed ...``: distributed DLG without the sub-command."""

import sys

from dmcmc_edu.cli.distributed import main

sys.exit(main())
