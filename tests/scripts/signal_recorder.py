"""Child process for tests/signals.rs: records the signals it receives.

Installs a handler for SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGTERM,
SIGCHLD, SIGWINCH and every real-time signal, then prints
"ready PID SIGRTMIN" once the handlers are in place. Each received signal is
printed as its number on its own line. Exits with status 42 after recording
SIGTERM.

Handlers write with os.write, one unbuffered write per line, so a handler
that runs inside another cannot interleave partial lines.
"""

import os
import signal

EXIT_STATUS_ON_TERM = 42

HANDLED = [
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGTERM,
    signal.SIGCHLD,
    signal.SIGWINCH,
    *range(signal.SIGRTMIN, signal.SIGRTMAX + 1),
]


def record(number, _frame):
    os.write(1, f"{number}\n".encode())
    if number == signal.SIGTERM:
        os._exit(EXIT_STATUS_ON_TERM)


for handled in HANDLED:
    signal.signal(handled, record)

os.write(1, f"ready {os.getpid()} {int(signal.SIGRTMIN)}\n".encode())
while True:
    signal.pause()
