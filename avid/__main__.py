"""`python -m avid` runs the command line."""
import signal
import sys

try:
    from .cli import main
except KeyboardInterrupt:            # Ctrl-C while starting up: no traceback either (avid.cli.EXIT_INTERRUPTED)
    sys.exit(130)

code = main()
signal.signal(signal.SIGINT, signal.SIG_IGN)   # the run is over: a late Ctrl-C must not break the interpreter's exit
sys.exit(code)
