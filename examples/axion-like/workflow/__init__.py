"""workflow: the workflow service: instances move through a definition's steps on events."""
