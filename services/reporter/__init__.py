"""The reporter: run history, the event log behind replay, email reports, commit statuses, CDEvents."""
