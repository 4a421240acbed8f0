"""Communication commands, cut by what they do (messages; config, devices and suppressions)."""
