import sys

from hrrkit.cli import main

sys.exit(main())
