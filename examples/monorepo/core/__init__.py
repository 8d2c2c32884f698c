"""core: helpers every service of the example monorepo shares (standard library only)."""
