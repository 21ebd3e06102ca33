"""Attaches a file to an image in a registry as oras does, for the tests: oras-py's
push of one layer with a `subject` (an OCI 1.1 referrer). oras-py pushes under a tag.

Usage: oras_attach.py HOST REPOSITORY TAG SUBJECT_JSON FILE MEDIA_TYPE
"""

import json
import sys

import oras.oci
import oras.provider

host, repository, tag, subject, path, media_type = sys.argv[1:]
registry = oras.provider.Registry(hostname=host, insecure=True)
registry.push(
    target=f"{host}/{repository}:{tag}",
    files=[f"{path}:{media_type}"],
    subject=oras.oci.Subject(**json.loads(subject)),
    disable_path_validation=True,
    quiet=True,
)
