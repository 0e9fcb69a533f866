"""Where things are: geodesy, SGP4 orbits and ground-site visibility for the LEO emulator.

Pure numpy + sgp4, no I/O beyond reading TLE files, so link geometry can be computed at
10 Hz for a few hundred satellites inside the emulation loop.
"""
