"""What the tests share, one module per kind of thing; no tests here.

Fixtures reach every test module through ``pytest_plugins`` in ``tests/conftest.py``; test
modules import only classes, constants and helper functions from here, never from each other.
"""
