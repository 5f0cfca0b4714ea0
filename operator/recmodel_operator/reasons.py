"""Every condition and Event reason the operator writes, in one place (CamelCase, as Kubernetes
reasons are). A person reading `kubectl describe recmodel` acts on these."""

from __future__ import annotations

from typing import Final

# Ready
AVAILABLE: Final = "Available"
REPLICAS_NOT_READY: Final = "ReplicasNotReady"
INFERENCE_SERVICE_READY: Final = "InferenceServiceReady"
INFERENCE_SERVICE_NOT_READY: Final = "InferenceServiceNotReady"

# Reconciled
APPLIED: Final = "Applied"
PRUNED: Final = "Pruned"
REPAIRED: Final = "Repaired"
CHILD_REJECTED: Final = "ChildRejected"
INVALID_SPEC: Final = "InvalidSpec"
NAME_TOO_LONG: Final = "NameTooLong"
KSERVE_NOT_INSTALLED: Final = "KServeNotInstalled"
KEDA_NOT_INSTALLED: Final = "KEDANotInstalled"
KIND_NOT_INSTALLED: Final = "KindNotInstalled"
KNATIVE_NOT_INSTALLED: Final = "KnativeNotInstalled"
DEPLOYMENT_MODE_FIXED: Final = "DeploymentModeFixed"

CHILD_NOT_WRITTEN: Final = "ChildNotWritten"  # the API server could not take a child now (webhook down, 5xx, timeout)
CONFLICTING_WRITER: Final = "ConflictingWriter"  # another field manager keeps changing fields we own

# Schedulable
NODES_AVAILABLE: Final = "NodesAvailable"
NO_MATCHING_NODES: Final = "NoMatchingNodes"
UNSCHEDULABLE: Final = "Unschedulable"

# Events only
CANARY_STEP: Final = "CanaryStep"
CANARY_PROMOTED: Final = "CanaryPromoted"
CANARY_ROLLED_BACK: Final = "CanaryRolledBack"
FINALIZER_REMOVED: Final = "FinalizerRemoved"

# Problems that a change of spec (or an install) fixes; retrying does not.
SPEC_PROBLEMS: Final = frozenset(
    {
        CHILD_REJECTED,
        INVALID_SPEC,
        NAME_TOO_LONG,
        KSERVE_NOT_INSTALLED,
        KEDA_NOT_INSTALLED,
        KIND_NOT_INSTALLED,
        KNATIVE_NOT_INSTALLED,
        DEPLOYMENT_MODE_FIXED,
    }
)
