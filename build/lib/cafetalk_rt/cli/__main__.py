"""``python -m cafetalk_rt.cli`` = ``cafetalk-rt``."""
import sys

from cafetalk_rt.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
