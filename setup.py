"""Metadata lives in setup.cfg; here only what setup.cfg cannot say: the C extension.

squidpy.peers._carp (CARP's running hash, see squidpy/peers/hashing.py) is required:
installing squidpy needs a C compiler and the Python headers (Debian: gcc, python3-dev)."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("squidpy.peers._carp", ["squidpy/peers/_carp.c"])])
