"""Kept for tools that still call setup.py; the project is defined in pyproject.toml."""

from setuptools import setup

setup()
