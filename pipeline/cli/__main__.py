"""`python -m pipeline.cli` (and `torchrun -m pipeline.cli`) runs the `perceive-ir` command."""

import sys

from pipeline.cli import main

sys.exit(main())
