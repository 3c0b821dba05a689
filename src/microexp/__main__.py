import sys

from microexp.cli import main

sys.exit(main())
