# SPDX-License-Identifier: Apache-2.0
"""Platform descriptions (what a board offers) and models of how sub-networks behave on it."""
