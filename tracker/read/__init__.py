"""The read side: the shapes of the answers and their arithmetic, with no I/O."""
