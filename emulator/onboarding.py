"""Hosted onboarding pages: placeholder until implemented."""

ROUTES: list = []
