"""The attester (issue #18): SBOM, GPG simple signature, cosign-format signature and SLSA v1
provenance for every pushed image, all stored next to the image in the OCI registry."""
