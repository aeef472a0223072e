"""satori: the SATORI-R1 method as a reproducible command-line tool."""

__version__ = "0.1.0"
