"""Platform descriptions (what a board offers) and models of how sub-networks behave on it."""
