"""A Kyverno `verifyImages` ClusterPolicy for the attester's cosign-format signatures and SLSA
provenance: what a cluster applies so that only Kiln-signed images run (the chart substrate's
admission check; the deployer's own check before deploy is the containers policy).

Generated from the operator's public key and the image pattern of the registry project, so the
policy a user applies is the one that matches the keys the attester signs with. Not validated by
Kyverno here (no cluster, no Kyverno CRD schema on our machines: docs/attest.md).
"""

from __future__ import annotations

from typing import Any

import yaml

SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"


def _attestor(public_pem: str) -> dict[str, Any]:
    # Kiln uploads nothing to Rekor or a CT log: the key is the whole trust.
    keys = {"publicKeys": public_pem.strip(), "rekor": {"ignoreTlog": True}, "ctlog": {"ignoreSCT": True}}
    return {"entries": [{"keys": keys}]}


def verify_images_policy(
    public_pem: str, image_pattern: str, name: str = "kiln-signed-images"
) -> dict[str, Any]:
    if "BEGIN PUBLIC KEY" not in public_pem:
        raise ValueError("the cosign public key must be a PEM public key (KILN_ATTEST_COSIGN_PUBLIC_KEY)")
    return {
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": name},
        "spec": {
            "validationFailureAction": "Enforce",
            "webhookTimeoutSeconds": 30,
            "rules": [
                {
                    "name": "kiln-cosign-signature",
                    "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                    "verifyImages": [
                        {
                            "imageReferences": [image_pattern],
                            "mutateDigest": True,
                            "verifyDigest": True,
                            "required": True,
                            "attestors": [_attestor(public_pem)],
                            "attestations": [{"type": SLSA_PROVENANCE, "attestors": [_attestor(public_pem)]}],
                        }
                    ],
                }
            ],
        },
    }


def render(public_pem: str, image_pattern: str) -> str:
    return yaml.safe_dump(verify_images_policy(public_pem, image_pattern), sort_keys=False)
