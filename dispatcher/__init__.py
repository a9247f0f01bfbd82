"""The control plane: the submit client, the sequencer, the sweeper and the CLI."""
