import sys

from .cpu_threads import wait_passively

wait_passively()  # before anything imports torch (see reconet_lib.cpu_threads)

from .cli import main  # noqa: E402 - after the wait policy, on purpose

sys.exit(main())
