import sys

from tltui.cli import main

sys.exit(main())
