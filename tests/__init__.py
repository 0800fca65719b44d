"""The test suite. A package, so that its media makers import as ``tests.<module>``, also from scripts/ (which put
the repository root on sys.path); pytest then puts the repository root, not tests/, on sys.path."""
