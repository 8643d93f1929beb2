"""A shim for tools that look for ``setup.py``: all of the project's metadata is in ``pyproject.toml``.

Apache Beam's ``--setup_file`` (how Dataflow workers get this project) builds the
package with ``python -m build --sdist`` when the ``build`` package is installed,
and otherwise runs ``python setup.py sdist``, which needs this file:

    poet prepare --runner DataflowRunner ... --setup_file ./setup.py
"""

from setuptools import setup

setup()
