"""Code that runs only inside the stage images (freeze, convert, app): `python -m ds2ir`.
Never imports ds2ir.host."""
