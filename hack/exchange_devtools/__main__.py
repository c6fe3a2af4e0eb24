"""`python -m exchange_devtools COMMAND`: the local stack commands behind the Makefile.

Commands: dev-up, dev-down, kube-up, kube-down, kube-operator, engines-report, images, monitoring. Each
lives in its own module; this file only dispatches, so importing one stack never imports the other.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "dev-up": "exchange_devtools.dev_stack:up",
    "dev-down": "exchange_devtools.dev_stack:down",
    "kube-up": "exchange_devtools.kube_stack:up",
    "kube-down": "exchange_devtools.kube_stack:down",
    "engines-report": "exchange_devtools.report:main",
    "images": "exchange_devtools.images:main",
    "kube-operator": "exchange_devtools.kube_operator:main",
    "monitoring": "exchange_devtools.monitoring:main",
}


def main(argv: list[str]) -> int:
    if len(argv) < 1 or argv[0] not in COMMANDS:
        sys.stderr.write(f"usage: python -m exchange_devtools {{{','.join(COMMANDS)}}}\n")
        return 2
    module, func = COMMANDS[argv[0]].split(":")
    from exchange_devtools.engines.base import EngineError

    try:
        return int(getattr(importlib.import_module(module), func)(argv[1:]) or 0)
    except EngineError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
