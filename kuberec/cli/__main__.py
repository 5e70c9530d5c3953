"""``python -m kuberec.cli``: the same CLI as the ``kuberec`` command."""

import sys

from kuberec.cli.main import main

sys.exit(main())
