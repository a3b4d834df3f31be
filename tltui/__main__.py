import sys

from tltui.commands.main import main

sys.exit(main())
