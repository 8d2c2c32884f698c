"""The target Python of a compile, read from the package's base image without running it."""
