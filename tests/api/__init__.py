"""Tests of the FastAPI application."""
