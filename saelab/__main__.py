import sys

from saelab.cli import main

sys.exit(main())
