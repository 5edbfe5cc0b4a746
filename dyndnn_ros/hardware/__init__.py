"""Hardware back ends: Jetson clock files (sysfs), hardware status sources (jtop, sysfs/procfs, simulation)."""
