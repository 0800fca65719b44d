"""`python -m avid` runs the command line."""
import sys

try:
    from .cli import main
except KeyboardInterrupt:            # Ctrl-C while starting up: no traceback either (avid.cli.EXIT_INTERRUPTED)
    sys.exit(130)

sys.exit(main())
