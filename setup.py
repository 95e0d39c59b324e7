"""Package list for setuptools (everything else is in pyproject.toml).

The exporters are developed in the top-level ``export/`` folder and installed as
``compress.export`` (``[tool.setuptools.package-dir]`` in pyproject.toml maps the name). A
``packages.find`` table cannot rename what it finds, so the list is computed here: every
package under ``compress/`` plus every package under ``export/`` renamed into ``compress.export``,
and ``hardware_profiles/`` as the data package ``compress.hardware_profiles``. Nothing installs a
top-level ``export`` (or ``hardware_profiles``) package.
"""

from setuptools import find_packages, setup

PACKAGES = [
    *find_packages(include=["compress", "compress.*"]),
    *("compress." + p for p in find_packages(include=["export", "export.*"])),
    "compress.hardware_profiles",  # data only: the YAML device profiles of hardware_profiles/
]

setup(packages=PACKAGES)
