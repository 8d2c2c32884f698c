"""The docs stage: MkDocs build of the build's source, published to a Wiki.js wiki."""
