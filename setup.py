"""Compatibility shim: the project's metadata lives in pyproject.toml's [project] table."""

from setuptools import setup

setup()
