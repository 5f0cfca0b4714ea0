"""Autoscalers: an autoscaling/v2 HPA (cpu, memory) or a KEDA ScaledObject on Prometheus queries of
the model server's own metrics (concurrency, rps, latency p95)."""

from __future__ import annotations

from typing import Any

from recmodel_operator.render.context import RenderContext

Obj = dict[str, Any]

DEFAULT_PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"


def prometheus_query(context: RenderContext) -> tuple[str, str]:
    """The PromQL of the RecModel's metric, and KEDA's metricType for it."""
    selector = f'namespace="{context.owner.namespace}",model="{context.owner.name}"'
    metric = context.spec.autoscaling.metric
    if metric == "latency":
        # The whole service's p95 (ms) over the last minute compared with the target: scale by
        # ratio, not per pod. With no requests in that minute the value is NaN, which KEDA reads
        # as 0, so an idle service goes back to minReplicas.
        query = f"1000 * histogram_quantile(0.95, sum(rate(recmodel_request_duration_seconds_bucket{{{selector}}}[1m])) by (le))"
        return query, "Value"
    if metric == "rps":
        return f"sum(rate(recmodel_requests_total{{{selector}}}[1m]))", "AverageValue"
    if metric == "concurrency":
        return f"sum(recmodel_inflight_requests{{{selector}}})", "AverageValue"
    raise ValueError(f"metric {metric} is not scaled through Prometheus")


def behavior(context: RenderContext) -> Obj | None:
    """The HPA's scaling behavior, where the spec changes Kubernetes' defaults."""
    window = context.spec.autoscaling.scale_down_stabilization_seconds
    return None if window is None else {"scaleDown": {"stabilizationWindowSeconds": window}}


def render_hpa(context: RenderContext, deployment: str) -> Obj:
    spec = context.spec
    hpa: Obj = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": context.metadata(deployment, "autoscaler"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
            "minReplicas": max(spec.autoscaling.min_replicas, 1),
            "maxReplicas": spec.autoscaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": spec.autoscaling.metric,
                        "target": {"type": "Utilization", "averageUtilization": spec.autoscaling.target},
                    },
                }
            ],
        },
    }
    if (scaling := behavior(context)) is not None:
        hpa["spec"]["behavior"] = scaling
    return hpa


def render_scaled_object(context: RenderContext, deployment: str, prometheus_url: str) -> Obj:
    spec = context.spec
    query, metric_type = prometheus_query(context)
    scaled_object: Obj = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": context.metadata(deployment, "autoscaler"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
            "minReplicaCount": spec.autoscaling.min_replicas,
            "maxReplicaCount": spec.autoscaling.max_replicas,
            "pollingInterval": 15,
            "cooldownPeriod": 120,
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": metric_type,
                    "metadata": {
                        "serverAddress": prometheus_url,
                        "query": query,
                        "threshold": str(spec.autoscaling.target),
                    },
                }
            ],
        },
    }
    if (scaling := behavior(context)) is not None:
        # KEDA passes this to the HPA it creates (advanced.horizontalPodAutoscalerConfig).
        scaled_object["spec"]["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": scaling}}
    return scaled_object
