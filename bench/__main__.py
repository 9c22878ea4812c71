"""`python -m bench` (or `./run bench`): every benchmark, one after the other."""

from __future__ import annotations

from bench import provision

provision.main()
