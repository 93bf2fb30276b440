"""The Kubernetes API boundary: auth from the official client, raw HTTP for everything else."""
