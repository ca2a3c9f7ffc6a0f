"""What a container log's path says about its pod, as OpenTelemetry resource attributes.

    /var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log      (kubelet, CRI)
    /var/log/containers/<pod>_<namespace>_<container>-<container id>.log  (kubelet's symlinks)
    /var/lib/docker/containers/<id>/<id>-json.log                        (Docker json-file)

Rotated files keep their attributes: kubelet renames `0.log` to `0.log.<timestamp>` (and may
gzip it), Docker `<id>-json.log` to `<id>-json.log.1`. A path in none of these shapes gives no
attributes. Namespace and pod names cannot hold `_` (DNS labels), which is what makes the
underscore-separated directory names unambiguous.
"""

from __future__ import annotations

import re
from typing import Final

from agent.spans.model import AttrValue

_POD_DIR: Final = re.compile(
    r"(?:^|/)(?P<namespace>[a-z0-9][a-z0-9-]*)_(?P<pod>[a-z0-9][a-z0-9.-]*)_(?P<uid>[0-9a-fA-F-]+)"
    r"/(?P<container>[a-z0-9][a-z0-9-]*)/(?P<restart>\d+)\.log(?:\.[^/]*)?$"
)
_CONTAINERS_LINK: Final = re.compile(
    r"(?:^|/)(?P<pod>[a-z0-9][a-z0-9.-]*)_(?P<namespace>[a-z0-9][a-z0-9-]*)_"
    r"(?P<container>[a-z0-9][a-z0-9-]*)-(?P<id>[0-9a-f]{64})\.log(?:\.[^/]*)?$"
)
_DOCKER: Final = re.compile(r"(?:^|/)(?P<id>[0-9a-f]{64})/(?P=id)-json\.log(?:\.[^/]*)?$")


def pod_attributes(path: str) -> dict[str, AttrValue]:
    """The k8s.* (or container.id) attributes `path` names; {} for any other path."""
    match = _POD_DIR.search(path)
    if match is not None:
        return {
            "k8s.namespace.name": match["namespace"],
            "k8s.pod.name": match["pod"],
            "k8s.pod.uid": match["uid"],
            "k8s.container.name": match["container"],
            "k8s.container.restart_count": int(match["restart"]),
        }
    match = _CONTAINERS_LINK.search(path)
    if match is not None:
        return {
            "k8s.namespace.name": match["namespace"],
            "k8s.pod.name": match["pod"],
            "k8s.container.name": match["container"],
            "container.id": match["id"],
        }
    match = _DOCKER.search(path)
    if match is not None:
        return {"container.id": match["id"]}
    return {}


def container_name(attributes: dict[str, AttrValue]) -> str | None:
    name = attributes.get("k8s.container.name")
    return name if isinstance(name, str) else None
