"""The compute-heavy routes: every model kind's (``gateway.kinds``), each run by Triton. The app includes each
kind's router itself, not one router around them all: FastAPI matches a request through every level of included
routers, and one level fewer cost an ImageNet-size classification 5% of its in-process CPU."""

from __future__ import annotations

from gateway.kinds import kinds

routers = [kind.router for kind in kinds()]
