"""The state DB: connection, migrations, and the SQL the rest calls by name."""
