import sys

from fastmix.cli import main

sys.exit(main())
