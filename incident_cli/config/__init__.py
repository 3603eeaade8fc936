"""The rule file: its model, how it is read, and what `config show` prints."""
