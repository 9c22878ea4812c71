from __future__ import annotations

from citytwin.cli import main

main()
