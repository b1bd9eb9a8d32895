"""``python -m unet_med`` is the ``unet-med`` command line."""

from __future__ import annotations

import sys

from unet_med.cli import main

sys.exit(main())
