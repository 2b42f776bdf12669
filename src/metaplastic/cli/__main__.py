import sys

from metaplastic.cli import main

sys.exit(main())
