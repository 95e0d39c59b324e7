"""The built-in device profiles (YAML), installed as package data ``compress.hardware_profiles``.

pyproject.toml maps this top-level folder into the ``compress`` namespace; the code finds it with
``compress.core.resources.package_path("compress.hardware_profiles")``. No Python lives here.
"""
