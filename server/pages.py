"""The freelancer's own pages, served when FRONTEND_URL is unset (the demo).

(Being built out: payment settings, success and error pages.)
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
