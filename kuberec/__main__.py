"""``python -m kuberec``: the same CLI as the ``kuberec`` command."""

import sys

from kuberec.cli import main

sys.exit(main())
