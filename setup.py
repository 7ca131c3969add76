"""Metadata lives in setup.cfg; here only what setup.cfg cannot say: the C extension.

squidpy.peers._carp (CARP's running hash, see squidpy/peers/hashing.py) is built when a C
compiler and the Python headers are there (Debian: gcc, python3-dev); without them squidpy
installs anyway and ranks CARP parents in Python (hashing.ranking_in_python), slower."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("squidpy.peers._carp", ["squidpy/peers/_carp.c"], optional=True)])
