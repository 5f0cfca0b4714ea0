"""What every renderer needs to know about the RecModel being rendered."""

from __future__ import annotations

from dataclasses import dataclass, field

from recmodel_operator import FIELD_MANAGER, GROUP, KIND, VERSION
from recmodel_operator.spec import RecModelSpec

DEFAULT_SERVER_IMAGE = "ghcr.io/recmodel/recmodel-server:0.1.0"
MODEL_SERVER_PORT = 8080
MODEL_DIR = "/mnt/models"


@dataclass(frozen=True)
class Owner:
    """The RecModel object the children belong to."""

    name: str
    namespace: str
    uid: str
    generation: int = 1


@dataclass(frozen=True)
class RenderContext:
    owner: Owner
    spec: RecModelSpec
    server_image: str = DEFAULT_SERVER_IMAGE
    ingress_domain: str = "example.com"
    extra_labels: dict[str, str] = field(default_factory=dict)
    # From the canary's delivery state (status.canary): its share of live traffic now, and
    # whether the stable model mirrors requests to it. None: the spec's trafficPercent.
    canary_weight: int | None = None
    mirror: bool = False

    @property
    def image(self) -> str:
        return self.spec.image or self.server_image

    def labels(self, component: str) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": "recmodel",
            "app.kubernetes.io/instance": self.owner.name,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": FIELD_MANAGER,
            **self.extra_labels,
        }

    def selector(self, component: str) -> dict[str, str]:
        return {"app.kubernetes.io/instance": self.owner.name, "app.kubernetes.io/component": component}

    def metadata(self, name: str, component: str) -> dict[str, object]:
        return {
            "name": name,
            "namespace": self.owner.namespace,
            "labels": self.labels(component),
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": KIND,
                    "name": self.owner.name,
                    "uid": self.owner.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        }
