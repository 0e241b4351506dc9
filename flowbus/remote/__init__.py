"""A team's server reached over its HTTP API: profiles (which server, ``flowbus login``), the
sink that sends a run by hand's events there, and the store reads the CLI makes through it.
Light to import: ``import flowbus`` reads the profile to choose where runs by hand report."""
