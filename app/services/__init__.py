"""The rules: every read and write the handlers need. The only code that commits."""
