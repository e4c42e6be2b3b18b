import sys

from uvlib.app.cli import main

sys.exit(main())
