"""Imported first by the preprocessing fork server (``set_forkserver_preload``): from here on the server, and
every worker it forks, ignores SIGINT. Ctrl-C in a terminal reaches the whole process group; the parent
alone handles it (it stops the pool), instead of the server and workers printing KeyboardInterrupt tracebacks
from their imports. Kept free of imports so that it runs as early as possible in the server."""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
