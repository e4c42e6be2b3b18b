"""The `uvlib` command line (cli) and what only it needs: completing a user's photos (complete), exporting
textured meshes (export), `uvlib train` (train_command) and argument checks (checks)."""
