"""``python -m mocks.city_platform …`` (README)."""

import sys

from mocks.city_platform.cli import main

sys.exit(main())
