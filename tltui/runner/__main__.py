import sys

from tltui.runner.loop import main

sys.exit(main())
