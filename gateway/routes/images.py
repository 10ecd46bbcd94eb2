"""The compute-heavy routes: every model kind's (``gateway.kinds``), each run by Triton."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.kinds import kinds

router = APIRouter()
for kind in kinds():
    router.include_router(kind.router)
