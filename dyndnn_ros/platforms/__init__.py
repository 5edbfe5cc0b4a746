# SPDX-License-Identifier: Apache-2.0
"""The platform model the policies use: board descriptions (what a board offers) and models of how
sub-networks behave on it."""
