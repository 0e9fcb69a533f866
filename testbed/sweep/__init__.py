"""Parameter sweeps as Ray tasks: spec (the file), expand (the runs), execute (Ray), table."""
