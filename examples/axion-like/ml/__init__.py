"""ml: the ai service: similarity scoring with numpy (tier `ai`); CPU features on amd64 only."""
