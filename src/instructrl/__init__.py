from instructrl.version import __version__
