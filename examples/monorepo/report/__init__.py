"""report: renders tables of build facts (needs tier `report`: tabulate)."""
